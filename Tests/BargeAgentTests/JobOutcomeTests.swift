import BargeCore
import BargeStore
import Testing

@testable import BargeAgent
@testable import BargeTransfer

/// The supervisor's outcome step without I/O: how a transfer's end changes its job and what follows from it.
@Suite("JobOutcome")
struct JobOutcomeTests {
    static func view(oneShot: Bool = false, refresh: RefreshInterval = .every(.hours(1))) -> JobView {
        var policy = TransferPolicy()
        policy.refresh = refresh
        policy.retry = RetryPolicy(minDelay: TimeSpan(seconds: 60), giveUpAfter: .hours(1))
        var record = JobRecord(id: 7)
        record.state = .transferring
        return JobView(
            spec: JobSpec(
                manifest: oneShot ? nil : "m",
                urls: ["https://o.test/f"],
                destination: "/srv/f",
                policy: policy
            ),
            record: record,
            isRunning: true
        )
    }

    static func apply(_ outcome: TransferOutcome, to job: inout JobView, progressed: Bool = false) -> JobOutcome {
        JobOutcome(applying: outcome, to: &job, wasStopping: false, progressed: progressed, now: 1000, jitter: (0, 0.5))
    }

    @Test func aCompletedMirrorIsUpToDateUntilItsNextCheckAndRunsItsHooks() {
        var job = Self.view()
        let done = CompletedTransfer(
            url: "https://o.test/f",
            size: 2048,
            sha256: "ab",
            validators: Validators(etag: "\"e\""),
            transferred: 2048
        )
        let effects = Self.apply(.completed(done), to: &job)
        #expect(job.record.state == .upToDate)
        #expect(abs((job.record.dueAt ?? 0) - (1000 + 3600)) < 0.001)  // the middle of ±10 %
        #expect(job.record.completedAt == 1000 && job.record.totalBytes == 2048)
        #expect(effects.validators == MirrorValidators(etag: "\"e\"", lastModified: nil, contentSHA256: "ab"))
        #expect(effects.history?.detail == "fetched 2 KiB from o.test")
        #expect(effects.hook?.complete == true)
    }

    @Test func aOneShotJobCompletes() {
        var job = Self.view(oneShot: true)
        let done = CompletedTransfer(url: "https://o.test/f", size: 10, validators: Validators(), transferred: 0)
        _ = Self.apply(.completed(done), to: &job)
        #expect(job.record.state == .complete)
        #expect(job.record.reason == "already had all 10 B")
    }

    @Test func failuresRetryUntilTheWindowClosesWithoutProgress() {
        var job = Self.view()
        let failure = TransferFailure(.transient, "connection reset")
        let first = Self.apply(.failed(failure), to: &job)
        #expect(job.record.state == .transientError)
        #expect(job.record.reason == "retry in 1m: connection reset")
        #expect(first.hook == nil && first.history?.state == "transient-error")
        // An hour later, still no progress: it gives up, and the error hooks run.
        job.record.firstFailureAt = 1000 - 3600
        let last = Self.apply(.failed(failure), to: &job)
        #expect(job.record.state == .error)
        #expect(job.record.reason == "gave up after 1h without progress: connection reset")
        #expect(last.hook?.complete == false)
        // Progress starts a new run: retried within seconds.
        job.record.state = .transferring
        _ = Self.apply(.failed(failure), to: &job, progressed: true)
        #expect(job.record.state == .transientError && job.record.dueAt == 1001)
    }

    @Test func anInterruptedJobWaitsAgainUnlessAPlanStoppedIt() {
        var job = Self.view()
        _ = Self.apply(.cancelled, to: &job)
        #expect(job.record.state == .queued && job.record.reason == "interrupted")
        var held = Self.view()
        held.record.state = .suspended
        held.record.reason = "suspended by user"
        _ = JobOutcome(applying: .cancelled, to: &held, wasStopping: true, progressed: false, now: 1, jitter: (0, 0))
        #expect(held.record.state == .suspended && held.record.reason == "suspended by user")
    }
}
