import BargeCore

/// Transfers started but not yet given a connection, in the order the engine admits them: by priority (highest
/// first), then by arrival. Each host's transfers wait in their own line, so one whose host has all the
/// connections it may have (the per-host limit) waits without holding up other hosts' transfers: Barge's own
/// admission enforces both limits, and libcurl never queues a transfer (whose wait would count as a stall).
///
/// Pure and generic (a transfer, or a number in the tests); admitting takes time in the number of hosts waiting
/// at the highest level that has an admissible one, not in the number of transfers.
struct AdmissionQueue<Item> {
    private struct Line {
        var items: [(item: Item, sequence: UInt64)] = []
        var head = 0
        var isEmpty: Bool { self.head == self.items.count }
        var first: (item: Item, sequence: UInt64) { self.items[self.head] }
    }

    /// By priority rank (index: `Priority`'s rank), each host's line.
    private var levels: [[String: Line]] = Array(repeating: [:], count: Priority.allCases.count)
    private var sequence: UInt64 = 0
    /// Transfers waiting.
    private(set) var count = 0

    var isEmpty: Bool { self.count == 0 }

    /// Adds a transfer at the end of its host's line at its priority.
    mutating func append(_ item: Item, host: String, priority: Priority) {
        self.sequence += 1
        self.levels[Self.level(priority)][host, default: Line()].items.append((item, self.sequence))
        self.count += 1
    }

    /// Takes the next transfer to admit: from the highest priority that has one whose host `mayConnect`, the one
    /// that arrived first among those hosts' lines. Nil when every waiting transfer's host is full.
    mutating func next(where mayConnect: (String) -> Bool) -> Item? {
        for level in self.levels.indices {
            var chosen: (host: String, sequence: UInt64)?
            for (host, line) in self.levels[level] where mayConnect(host) {
                if chosen == nil || line.first.sequence < chosen!.sequence { chosen = (host, line.first.sequence) }
            }
            guard let chosen else { continue }
            var line = self.levels[level].removeValue(forKey: chosen.host)!
            let item = line.first.item
            line.head += 1
            if !line.isEmpty {
                if line.head > 64, line.head * 2 > line.items.count {
                    line.items.removeFirst(line.head)
                    line.head = 0
                }
                self.levels[level][chosen.host] = line
            }
            self.count -= 1
            return item
        }
        return nil
    }

    /// The first waiting transfer that `matches`.
    func first(where matches: (Item) -> Bool) -> Item? {
        for level in self.levels {
            for line in level.values {
                for entry in line.items[line.head...] where matches(entry.item) { return entry.item }
            }
        }
        return nil
    }

    /// Removes and returns the first waiting transfer that `matches`.
    mutating func remove(where matches: (Item) -> Bool) -> Item? {
        for level in self.levels.indices {
            for (host, var line) in self.levels[level] {
                guard let index = line.items[line.head...].firstIndex(where: { matches($0.item) }) else { continue }
                let item = line.items.remove(at: index).item
                self.levels[level][host] = line.isEmpty ? nil : line
                self.count -= 1
                return item
            }
        }
        return nil
    }

    /// Empties the queue; returns what waited.
    mutating func removeAll() -> [Item] {
        let items = self.levels.flatMap { level in level.values.flatMap { $0.items[$0.head...].map(\.item) } }
        self.levels = Array(repeating: [:], count: Priority.allCases.count)
        self.count = 0
        return items
    }

    /// Levels in admission order: foreground first.
    private static func level(_ priority: Priority) -> Int { Priority.allCases.firstIndex(of: priority)! }
}
