import Synchronization

/// A path or URL held compactly, for the 100,000s of jobs an agent keeps in memory: its head, up to and including
/// the last "/", is shared by every text with the same head (a destination's directory, a URL's folder), and its
/// tail (the file name) is usually short enough for Swift to keep inside the value (15 UTF-8 bytes) rather than on
/// the heap.
public struct SharedHeadText: Hashable, Sendable, CustomStringConvertible {
    private let head: InternedText?
    private let tail: String

    /// Splits `text` after its last "/".
    public init(_ text: String) {
        let (head, tail) = Self.split(Substring(text))
        self.head = head.isEmpty ? nil : InternedText.make(head)
        self.tail = String(tail)
    }

    /// The whole text (a new string: keep the value, not this, where many are held).
    public var text: String { self.head.map { $0.text + self.tail } ?? self.tail }

    public var description: String { self.text }

    /// The URL's `host:port` (``URLRules/host(of:)``), found once per shared head rather than once per call.
    public var urlHost: String {
        if let host = self.head?.urlHost { return host }
        return URLRules.host(of: self.text)
    }

    /// Whether this is `text`, byte for byte (as paths are), without building the whole string.
    public func equals(_ text: Substring) -> Bool {
        let (head, tail) = Self.split(text)
        return self.tail.utf8.elementsEqual(tail.utf8) && (self.head?.text ?? "").utf8.elementsEqual(head.utf8)
    }

    /// A stable 64-bit hash of the whole text's UTF-8 (FNV-1a): the same as ``hash64(of:)`` of the text.
    public var hash64: UInt64 {
        var state = Self.fnvOffset
        if let head = self.head { state = Self.fnv(head.text.utf8, state) }
        return Self.fnv(self.tail.utf8, state)
    }

    /// FNV-1a of a text's UTF-8.
    public static func hash64(of text: Substring) -> UInt64 { Self.fnv(text.utf8, Self.fnvOffset) }

    private static let fnvOffset: UInt64 = 0xcbf2_9ce4_8422_2325

    private static func fnv(_ bytes: some Sequence<UInt8>, _ start: UInt64) -> UInt64 {
        var state = start
        for byte in bytes { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return state
    }

    private static func split(_ text: Substring) -> (head: Substring, tail: Substring) {
        guard let slash = text.utf8.lastIndex(of: UInt8(ascii: "/")) else { return (text.prefix(0), text) }
        let cut = text.utf8.index(after: slash)
        return (text[..<cut], text[cut...])
    }
}

/// An immutable string shared by every holder of an equal one, while the intern table keeps it.
final class InternedText: Sendable, Hashable {
    let text: String
    /// The host of a URL whose authority the text holds whole (it goes past the `//`), else nil.
    let urlHost: String?

    private init(_ text: String) {
        self.text = text
        let authority = URLRules.authorityStart(of: text)
        self.urlHost = authority.map { text[$0...].contains("/") } == true ? URLRules.host(of: text) : nil
    }

    /// The shared instance for `text`.
    static func make(_ text: Substring) -> InternedText {
        Self.table.withLock { table in
            let key = String(text)
            if let known = table[key] { return known }
            if table.count >= 1 << 16 { table.removeAll() }  // a bound; instances in use stay valid
            let made = InternedText(key)
            table[key] = made
            return made
        }
    }

    private static let table = Mutex<[String: InternedText]>([:])

    static func == (lhs: InternedText, rhs: InternedText) -> Bool { lhs === rhs || lhs.text == rhs.text }
    func hash(into hasher: inout Hasher) { hasher.combine(self.text) }
}

/// Strings that many jobs hold equal (manifest names), kept once.
enum InternedString {
    /// The one held instance equal to `text`.
    static func of(_ text: String) -> String {
        Self.table.withLock { table in
            if table.count >= 1 << 16, !table.contains(text) { table.removeAll() }
            return table.insert(text).memberAfterInsert
        }
    }

    private static let table = Mutex<Set<String>>([])
}
