/// When an engine thread hands the files it received on to be put in place: at once when nothing else is
/// running on the thread, else in batches.
///
/// Every commit costs two syncs of the file system, and a sync's price hardly depends on how many files it covers:
/// it writes the same metadata blocks again (inode table, bitmaps, the directory) and flushes the disk's cache. A
/// burst of 2,000 files of 16 KiB committed back to back took 85 syncs and 2,600 block requests; in batches of
/// 128, 19 syncs and 590 requests, a sixth less CPU and time. While other transfers of the thread are still
/// receiving, a file therefore waits for its batch to fill, at most ``longestWait`` at each of its two stages
/// (before the commit that places it, and before the sync that makes its link durable, which the next batch's
/// commit shares); once the thread has nothing else running it goes at once, so that the last files of a burst,
/// or a lone download, are not held up.
///
/// Pure: the engine thread passes what it knows and does what it is told.
struct CommitPacing: Sendable {
    /// A batch of this many files goes at once.
    var batchSize = 128
    /// No file waits longer than this (seconds) for its batch to fill.
    var longestWait = 0.025

    /// What the engine thread does with files that are waiting.
    enum Decision: Equatable, Sendable {
        /// Hand them on now.
        case now
        /// Hand them on at this time (monotonic seconds) unless a reason to go earlier comes first.
        case at(Double)
    }

    /// How many received files may wait on one of `threads` engine threads (each holds an open file until it is
    /// placed): three batches (one being committed, one gathering, one on its way), and at most half the
    /// `descriptorLimit` the process may open, shared by the threads; at least 16.
    func waitingBound(descriptorLimit: Int, threads: Int) -> Int {
        max(16, min(3 * self.batchSize, descriptorLimit / 2 / max(1, threads)))
    }

    /// This pacing with batches of at most a third of the `bound` on waiting files, so that a batch can fill
    /// while the one before it is committed.
    func fitted(toWaiting bound: Int) -> CommitPacing {
        var fitted = self
        fitted.batchSize = max(1, min(self.batchSize, bound / 3))
        return fitted
    }

    /// Whether `count` files waiting since `since` go now, given whether other transfers of the thread are still
    /// running (or about to start).
    func decide(count: Int, since: Double, now: Double, othersRunning: Bool) -> Decision {
        let due = since + self.longestWait
        if !othersRunning || count >= self.batchSize || now >= due { return .now }
        return .at(due)
    }
}
