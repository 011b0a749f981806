import Glibc

/// A failed system call: which call, on what, and the `errno` it set, with the C library's text for it.
public struct BargeSystemError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The `errno` value.
    public var errno: Int32
    /// The call that failed, e.g. `openat`.
    public var function: String
    /// The path or object the call was about.
    public var subject: String
    /// Barge's own words for the problem, when the C library's would mislead.
    public var explanation: String?

    /// Creates the error.
    public init(errno: Int32, function: String, subject: String, explanation: String? = nil) {
        self.errno = errno
        self.function = function
        self.subject = subject
        self.explanation = explanation
    }

    /// The explanation, else the C library's text for `errno`, e.g. "No space left on device".
    public var reason: String { self.explanation ?? String(cString: strerror(self.errno)) }

    /// `openat /srv/a: Permission denied`.
    public var description: String { "\(self.function) \(self.subject): \(self.reason)" }

    /// Whether retrying later may succeed (a full disk, quota, or an interrupted device) rather than needing a fix.
    public var isTransient: Bool {
        [ENOSPC, EDQUOT, EIO, EAGAIN, ENOMEM, EMFILE, ENFILE, EBUSY].contains(self.errno)
    }
}

/// Runs a system call, retrying on `EINTR`, and turns `-1` into a ``BargeSystemError``.
@discardableResult
func systemCall<Result: BinaryInteger>(
    _ function: String,
    _ subject: @autoclosure () -> String,
    _ body: () -> Result
) throws(BargeSystemError) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = errno
        if error == EINTR { continue }
        throw BargeSystemError(errno: error, function: function, subject: subject())
    }
}
