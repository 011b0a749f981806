import BargeCore
import BargeStore
import BargeTransfer

/// How a transfer's end changes its job, and what the supervisor must do about it: the supervisor's outcome step,
/// pure (the clock and the random fractions are passed in), so every rule is tested without a store or engine.
struct JobOutcome {
    /// Validators of the mirrored copy to store.
    var validators: MirrorValidators?
    /// Validators a `304` sent again (each replaces the stored one of its kind).
    var refreshedValidators: (etag: String?, lastModified: String?)?
    /// A line for the job's history.
    var history: JobHistoryEntry?
    /// Hooks to run: on completion (true) or on error (false), with the reason.
    var hook: (complete: Bool, reason: String)?
    /// An upload the server now has: its reply to keep, and what becomes of its local file.
    var uploaded: (reply: [UInt8]?, after: UploadEntry.AfterUpload)?

    /// Applies `outcome` to `job`.
    ///
    /// - Parameters:
    ///   - wasStopping: a plan or the agent asked the transfer to stop (its new state is already set).
    ///   - progressed: the transfer ended further on than it began (``RetryVerdict``).
    ///   - jitter: random fractions in 0..<1, for the retry delay and the refresh interval.
    init(
        applying outcome: TransferOutcome,
        to job: inout JobView,
        wasStopping: Bool,
        progressed: Bool,
        now: Double,
        jitter: (retry: Double, refresh: Double)
    ) {
        switch outcome {
        case .completed(let done):
            job.record.offset = 0
            job.record.attempts = 0
            job.record.firstFailureAt = nil
            job.record.completedAt = now
            job.record.totalBytes = done.size
            let detail =
                job.spec.isUpload
                ? self.completedUpload(done, &job) : self.completedDownload(done, &job, now: now, jitter: jitter)
            self.history = JobHistoryEntry(
                at: now,
                state: job.record.state.rawValue,
                detail: detail,
                bytes: done.transferred
            )
            self.hook = (true, detail)
        case .notModified(let validators):
            job.record.attempts = 0
            job.record.firstFailureAt = nil
            if validators.etag != nil || validators.lastModified != nil {
                self.refreshedValidators = (validators.etag, validators.lastModified)
            }
            Self.scheduleRefresh(&job, now: now, jitter: jitter.refresh)
        case .failed(let failure):
            let policy = job.spec.policy.retry
            let verdict = RetryVerdict(
                policy: policy,
                attempts: job.record.attempts,
                firstFailureAt: job.record.firstFailureAt,
                progressed: progressed,
                permanent: failure.kind == .permanent,
                retryAfter: failure.retryAfter.map { TimeSpan(seconds: Int64($0.rounded(.up))) },
                now: now,
                jitter: jitter.retry
            )
            job.record.attempts = verdict.attempts
            job.record.firstFailureAt = verdict.firstFailureAt
            if let retryAt = verdict.retryAt {
                job.record.state = .transientError
                job.record.dueAt = retryAt
                let delay = TimeSpan(seconds: Int64((retryAt - now).rounded()))
                job.record.reason = "retry in \(delay): \(failure.reason)"
            } else {
                job.record.state = .error
                job.record.reason =
                    failure.kind == .permanent
                    ? failure.reason : "gave up after \(policy.giveUpAfter) without progress: \(failure.reason)"
                job.record.dueAt = nil
                self.hook = (false, job.record.reason)
            }
            self.history = JobHistoryEntry(at: now, state: job.record.state.rawValue, detail: failure.reason, bytes: 0)
        case .cancelled:
            // Stopped by a plan (its new state is already set) or by the agent stopping.
            if !wasStopping, job.record.state.isRunning || job.record.state == .queued {
                job.record.state = .queued
                job.record.reason = "interrupted"
            }
        }
    }

    /// A download's completion: its validators kept, and up to date until its refresh (complete, for a one-shot
    /// job). Returns what it did, for the history.
    private mutating func completedDownload(
        _ done: CompletedTransfer,
        _ job: inout JobView,
        now: Double,
        jitter: (retry: Double, refresh: Double)
    ) -> String {
        job.record.hasValidators = true
        self.validators = MirrorValidators(
            etag: done.validators.etag,
            lastModified: done.validators.lastModified,
            contentSHA256: done.sha256
        )
        // Nothing transferred: the file was found complete (a kill came between its placing and its record).
        let detail =
            done.transferred == 0 && done.size > 0
            ? "already had all \(ByteCount(done.size).humanReadable)"
            : "fetched \(ByteCount(done.transferred).humanReadable) from \(URLRules.host(of: done.url))"
        if job.spec.isOneShot {
            job.record.state = .complete
            job.record.reason = detail
        } else {
            Self.scheduleRefresh(&job, now: now, jitter: jitter.refresh)
        }
        return detail
    }

    /// An upload's completion: up to date (never due: a change of its file queues it), the stamp and hash of what
    /// the server has kept, its reply and after-action handed on. Returns what it did, for the history.
    private mutating func completedUpload(_ done: CompletedTransfer, _ job: inout JobView) -> String {
        job.record.dueAt = nil
        let host = URLRules.host(of: done.url)
        let sent = ByteCount(done.transferred).humanReadable
        let detail =
            if done.transferred == 0, done.size > 0, let hash = done.sha256 {
                "unchanged since it was sent (sha256 \(hash.prefix(12))…); not sent again"
            } else if done.transferred < done.size {
                "uploaded \(sent) to \(host) (it had \(ByteCount(done.size - done.transferred).humanReadable) already)"
            } else {
                "uploaded \(sent) to \(host)"
            }
        // The content's hash as sent: a later touch of the file is compared by content.
        if let hash = done.sha256 {
            self.validators = MirrorValidators(contentSHA256: hash)
            job.record.hasValidators = true
        }
        var upload = job.spec.upload!
        if let stamp = done.stamp { upload.stamp = stamp }  // what the server has: a later change is sent again
        job.spec.upload = upload
        job.record.state = .upToDate
        job.record.reason = upload.after == .keep ? detail + "; sent again when it changes" : detail
        self.uploaded = (done.reply, upload.after)
        return detail
    }

    /// Up to date until the next check (its reason is derived from the due time when shown), ±10 % jitter so a
    /// fleet that synced together does not come back together.
    static func scheduleRefresh(_ job: inout JobView, now: Double, jitter: Double) {
        job.record.state = .upToDate
        job.record.reason = ""
        switch job.spec.policy.refresh {
        case .never:
            job.record.dueAt = nil
        case .every(let interval):
            job.record.dueAt = now + Double(interval.seconds) * (0.9 + 0.2 * min(max(jitter, 0), 1))
        }
    }
}
