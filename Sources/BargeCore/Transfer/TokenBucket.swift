/// A rate limiter that lets bytes through at `rate` on average, in the write path of a transfer.
///
/// It works on debt: a chunk is admitted while the balance is not negative and its size is then taken, so
/// the balance may go below zero; the caller pauses until the balance is back to zero. Over any long span the
/// bytes admitted are `rate × time + burst` at most, whatever the chunk sizes, which keeps the long-run rate
/// exact even with large chunks. Pure: time is passed in.
public struct TokenBucket: Sendable {
    /// Bytes per second.
    public private(set) var rate: Double
    /// The most that can accumulate while idle, in bytes.
    public private(set) var burst: Double
    private var balance: Double
    private var updatedAt: Double

    /// Creates a full bucket.
    ///
    /// - Parameters:
    ///   - bytesPerSecond: the rate.
    ///   - burst: the largest burst after an idle period; default a tenth of a second of the rate, at least 16 KiB.
    ///   - now: the current time in seconds (any monotonic origin).
    public init(bytesPerSecond: UInt64, burst: Double? = nil, now: Double) {
        self.rate = Double(bytesPerSecond)
        self.burst = burst ?? max(Double(bytesPerSecond) / 10, 16_384)
        self.balance = self.burst
        self.updatedAt = now
    }

    private mutating func refill(now: Double) {
        if now > self.updatedAt {
            self.balance = min(self.burst, self.balance + (now - self.updatedAt) * self.rate)
            self.updatedAt = now
        }
    }

    /// Admits a chunk of `bytes` (taking them from the balance) or returns how long to wait before asking again.
    ///
    /// - Returns: nil when admitted; otherwise the seconds until the balance is back to zero.
    public mutating func admit(_ bytes: Int, now: Double) -> Double? {
        if let wait = self.delay(now: now) { return wait }
        self.take(bytes)
        return nil
    }

    /// How long to wait before bytes may pass, or nil when they may now; takes nothing. With ``take(_:)``, for a
    /// chunk that must pass several buckets: each is asked, and the chunk is taken from all only when none says
    /// wait (else a bucket that said yes would be charged again when the chunk comes back).
    public mutating func delay(now: Double) -> Double? {
        self.refill(now: now)
        // Less than a byte of debt counts as none: a wait computed from floating-point debt can round to a time
        // step too small to move the clock, and the caller would spin.
        return self.balance < -1 ? -self.balance / self.rate : nil
    }

    /// Takes a chunk that ``delay(now:)`` let pass.
    public mutating func take(_ bytes: Int) { self.balance -= Double(bytes) }

    /// Changes the rate at once; the balance carries over, capped to the new burst.
    public mutating func setRate(bytesPerSecond: UInt64, now: Double) {
        self.refill(now: now)
        self.rate = Double(bytesPerSecond)
        self.burst = max(Double(bytesPerSecond) / 10, 16_384)
        self.balance = min(self.balance, self.burst)
    }
}

extension TokenBucket {
    /// `bucket` under a new limit: none when off, a full new bucket where there was none, else the same bucket at
    /// the new rate (its balance carries over).
    public static func adjusted(_ bucket: TokenBucket?, to limit: RateLimit, now: Double) -> TokenBucket? {
        guard case .limited(let rate) = limit else { return nil }
        guard var bucket else { return TokenBucket(bytesPerSecond: rate.bytesPerSecond, now: now) }
        bucket.setRate(bytesPerSecond: rate.bytesPerSecond, now: now)
        return bucket
    }
}
