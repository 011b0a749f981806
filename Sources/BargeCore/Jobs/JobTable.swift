/// The agent's jobs in memory: one array in id order (what the reconciler reads, without a copy), found by id
/// with a binary search and by destination through a small open-addressing index of array positions. Built for
/// 100,000s of jobs: no per-job dictionary entry, no copied keys.
public struct JobTable: Sendable {
    /// The jobs, in increasing id order.
    public private(set) var views: [JobView] = []
    /// Positions in `views` (+1; 0 is empty), placed by the destination's hash; its size is a power of two at
    /// least twice the count.
    private var destinationIndex: [Int32] = []

    /// A table of these jobs.
    public init(_ views: [JobView] = []) {
        self.views = views
        if !self.views.isSorted(by: { $0.record.id < $1.record.id }) { self.views.sort { $0.record.id < $1.record.id } }
        self.rebuildIndex()
    }

    /// How many jobs.
    public var count: Int { self.views.count }

    /// The job with this id.
    public subscript(id: Int64) -> JobView? { self.position(of: id).map { self.views[$0] } }

    /// The job's position in ``views``.
    public func position(of id: Int64) -> Int? {
        var low = 0
        var high = self.views.count
        while low < high {
            let middle = (low + high) / 2
            let found = self.views[middle].record.id
            if found == id { return middle }
            if found < id { low = middle + 1 } else { high = middle }
        }
        return nil
    }

    /// The id of the job that writes `destination`.
    public func id(forDestination destination: String) -> Int64? {
        guard !self.destinationIndex.isEmpty else { return nil }
        let text = Substring(destination)
        let mask = self.destinationIndex.count - 1
        var bucket = Int(truncatingIfNeeded: SharedHeadText.hash64(of: text)) & mask
        while true {
            let entry = Int(self.destinationIndex[bucket])
            if entry == 0 { return nil }
            if self.views[entry - 1].spec.destinationKey.equals(text) { return self.views[entry - 1].record.id }
            bucket = (bucket + 1) & mask
        }
    }

    /// Changes a job in place; its destination must stay the same (``replaceSpec(_:_:)`` changes it). Returns
    /// nil when there is no such job.
    @discardableResult
    public mutating func modify<Result>(_ id: Int64, _ body: (inout JobView) throws -> Result) rethrows -> Result? {
        guard let position = self.position(of: id) else { return nil }
        let destination = self.views[position].spec.destinationKey
        let result = try body(&self.views[position])
        if self.views[position].spec.destinationKey != destination { self.rebuildIndex() }
        return result
    }

    /// Puts back a changed copy of a job (found by its id); its destination may have changed.
    public mutating func replace(_ view: JobView) {
        self.modify(view.record.id) { $0 = view }
    }

    /// Adds a job (ids come from the store and grow, so this is an append but for a reused id).
    public mutating func insert(_ view: JobView) {
        if let last = self.views.last, last.record.id >= view.record.id {
            self.views.append(view)
            self.views.sort { $0.record.id < $1.record.id }
            self.rebuildIndex()
            return
        }
        self.views.append(view)
        if self.views.count * 2 > self.destinationIndex.count {
            self.rebuildIndex()
        } else {
            self.place(self.views.count - 1)
        }
    }

    /// Removes jobs; returns the removed ones.
    @discardableResult
    public mutating func remove(_ ids: Set<Int64>) -> [JobView] {
        guard !ids.isEmpty else { return [] }
        var removed: [JobView] = []
        self.views.removeAll { view in
            guard ids.contains(view.record.id) else { return false }
            removed.append(view)
            return true
        }
        if !removed.isEmpty { self.rebuildIndex() }
        return removed
    }

    /// Gives back spare capacity (after a large removal or load).
    public mutating func compact() {
        if self.views.capacity > self.views.count + self.views.count / 8 + 16 {
            var exact: [JobView] = []
            exact.reserveCapacity(self.views.count)
            exact.append(contentsOf: self.views)
            self.views = exact
        }
    }

    private mutating func rebuildIndex() {
        var size = 16
        while size < self.views.count * 2 { size *= 2 }
        self.destinationIndex = [Int32](repeating: 0, count: size)
        for position in self.views.indices { self.place(position) }
    }

    private mutating func place(_ position: Int) {
        let mask = self.destinationIndex.count - 1
        var bucket = Int(truncatingIfNeeded: self.views[position].spec.destinationKey.hash64) & mask
        while self.destinationIndex[bucket] != 0 { bucket = (bucket + 1) & mask }
        self.destinationIndex[bucket] = Int32(position + 1)
    }
}

extension Array {
    fileprivate func isSorted(by ordered: (Element, Element) -> Bool) -> Bool {
        self.indices.dropFirst().allSatisfy { !ordered(self[$0], self[$0 - 1]) }
    }
}
