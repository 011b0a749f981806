import BargeCore
import Testing

@testable import BargeAgent

/// Who may control which jobs, without a socket: the supervisor's command step.
@Suite("JobSelection")
struct JobSelectionTests {
    static func job(_ id: Int64, manifest: String? = "m", owner: FileOwner? = nil) -> JobView {
        var policy = TransferPolicy()
        policy.owner = owner
        return JobView(
            spec: JobSpec(
                manifest: manifest,
                urls: ["https://o.test/\(id)"],
                destination: "/srv/\(id)",
                policy: policy
            ),
            record: JobRecord(id: id),
            isRunning: false
        )
    }

    static let table = JobTable([
        job(1), job(2), job(3, manifest: nil, owner: FileOwner(user: "1001", group: "1001")),
        job(4, manifest: nil, owner: FileOwner(user: "1002", group: "1002")),
    ])
    static let user = ControlCaller(uid: 1001, gid: 1001, pid: 9, isAdministrator: false)
    static let admin = ControlCaller(uid: 1003, gid: 50, pid: 9, isAdministrator: true)

    @Test func aUserControlsOnlyTheJobsTheyAdded() {
        #expect(JobSelection.select(.jobs([3]), by: Self.user, in: Self.table).ids == [3])
        let theirs = JobSelection.select(.jobs([3, 4]), by: Self.user, in: Self.table)
        #expect(theirs.ids.isEmpty && theirs.refusal?.error == .forbidden)
        #expect(theirs.refusal?.message == "job 4 belongs to another user")
        #expect(JobSelection.select(.jobs([1]), by: Self.user, in: Self.table).refusal?.error == .forbidden)
        #expect(JobSelection.select(.manifest("m"), by: Self.user, in: Self.table).refusal?.error == .forbidden)
    }

    @Test func anAdministratorControlsEveryJob() {
        #expect(JobSelection.select(.jobs([1, 4]), by: Self.admin, in: Self.table).ids == [1, 4])
        #expect(JobSelection.select(.manifest("m"), by: Self.admin, in: Self.table).ids == [1, 2])
        #expect(JobSelection.select(.jobs([99]), by: Self.admin, in: Self.table).refusal?.error == .noSuchJob)
    }
}
