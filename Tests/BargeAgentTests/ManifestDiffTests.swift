import BargeCore
import BargeStore
import Testing

@testable import BargeAgent

/// The supervisor's manifest step without I/O: what the manifests read mean for the jobs.
@Suite("ManifestDiff")
struct ManifestDiffTests {
    static let config: AgentConfig = {
        var config = AgentConfig.defaults(scope: .system)
        config.allowedRoots = ["/srv"]
        return config
    }()

    /// A manifest as loaded (its path names no file: its owner is the agent's).
    static func manifest(_ id: String, _ text: String) -> LoadedManifest {
        let parsed = ManifestParser(config: Self.config, facts: NoFileFacts())
            .parse(text: text, path: "/nonexistent/\(id).yaml", id: id)
        var withText = parsed
        withText.text = text
        return LoadedManifest(withText)
    }

    static func entries(_ destinations: [String], prune: Bool = false) -> String {
        "version: 1\nprune: \(prune)\ndownload:\n"
            + destinations.map { "  - url: https://o.test/\($0)\n    dest: /srv/\($0)\n" }.joined()
    }

    static func job(_ id: Int64, _ manifest: String, _ destination: String, completed: Bool = true) -> JobView {
        var record = JobRecord(id: id)
        if completed { record.completedAt = 1 }
        return JobView(
            spec: JobSpec(
                manifest: manifest,
                urls: ["https://o.test/\(destination)"],
                destination: "/srv/\(destination)"
            ),
            record: record,
            isRunning: false
        )
    }

    static func diff(
        _ loaded: [LoadedManifest],
        jobs: [JobView],
        previous: [String: KnownManifest] = [:],
        standIns: [String: (manifest: LoadedManifest, storedAt: Double)] = [:],
        digests: [String: String] = [:],
        holdingAbsent: Bool = false
    ) -> ManifestDiff {
        let ids = Dictionary(uniqueKeysWithValues: jobs.map { ($0.spec.destination, $0.record.id) })
        return ManifestDiff(
            loaded: loaded,
            standIns: standIns,
            previous: previous,
            jobs: jobs,
            jobIDs: { ids[$0] },
            digests: digests,
            holdingAbsent: holdingAbsent,
            now: 100
        )
    }

    @Test func newEntriesAreAddedRemovedOnesGoAndPruneSaysWhetherTheirFilesGoToo() {
        let diff = Self.diff(
            [Self.manifest("a", Self.entries(["b", "c"], prune: true))],
            jobs: [Self.job(1, "a", "a"), Self.job(2, "a", "b")]
        )
        #expect(diff.added.map(\.destination) == ["/srv/c"])
        #expect(diff.kept.map(\.id) == [2])
        #expect(diff.removed.map(\.id) == [1] && diff.removed.first?.prunes == true)
        #expect(diff.known["a"]?.hasGoodVersion == true)
        #expect(diff.versionsToStore.map(\.id) == ["a"])
    }

    /// A directory filled again a file at a time after it was missing or empty: while that may go on, a manifest not
    /// back yet keeps its jobs and its stored version; once it has settled, a manifest still absent loses them.
    @Test func aManifestNotBackYetKeepsItsJobsWhileTheDirectoryIsRefilled() {
        let jobs = [Self.job(1, "a", "a"), Self.job(2, "b", "b")]
        let loaded = [Self.manifest("a", Self.entries(["a"]))]
        let previous = Self.diff(loaded + [Self.manifest("b", Self.entries(["b"], prune: true))], jobs: jobs).known
        let digests = ["a": "1", "b": "2"]
        let holding = Self.diff(loaded, jobs: jobs, previous: previous, digests: digests, holdingAbsent: true)
        #expect(holding.removed.isEmpty && holding.versionsToDrop.isEmpty)
        #expect(Set(holding.kept.map(\.id)) == [1, 2] && holding.known["b"]?.prune == true)
        let settled = Self.diff(loaded, jobs: jobs, previous: previous, digests: digests)
        #expect(settled.removed.map(\.id) == [2] && settled.removed.first?.prunes == true)
        #expect(settled.versionsToDrop == ["b"])
    }

    @Test func anInvalidManifestKeepsItsJobs() {
        let jobs = [Self.job(1, "a", "a"), Self.job(2, "a", "b")]
        let broken = Self.manifest("a", "version: 1\nnot-a-key: 1\n")
        // With a good version in this run.
        var previous = Self.diff([Self.manifest("a", Self.entries(["a", "b"]))], jobs: jobs).known
        var diff = Self.diff([broken], jobs: jobs, previous: previous)
        #expect(diff.removed.isEmpty && diff.added.isEmpty && Set(diff.kept.map(\.id)) == [1, 2])
        #expect(diff.known["a"]?.errors.isEmpty == false && diff.known["a"]?.hasGoodVersion == true)
        // After a restart, from its stored last good version (which stands in with its own entries).
        previous = [:]
        let stored = Self.manifest("a", Self.entries(["a", "b", "c"], prune: true))
        diff = Self.diff([broken], jobs: jobs, standIns: ["a": (stored, 50)], digests: ["a": "x"])
        #expect(diff.removed.isEmpty && diff.added.map(\.destination) == ["/srv/c"])
        #expect(diff.known["a"]?.goodVersionStoredAt == 50 && diff.known["a"]?.prune == true)
        #expect(diff.versionsToDrop.isEmpty && diff.versionsToStore.isEmpty)
        // With nothing stored: whatever jobs the store holds for it stay.
        diff = Self.diff([broken], jobs: jobs)
        #expect(diff.removed.isEmpty && Set(diff.kept.map(\.id)) == [1, 2])
    }

    @Test func aManifestWhoseFileIsGoneTakesItsJobsAndStoredVersion() {
        let diff = Self.diff([], jobs: [Self.job(1, "a", "a")], digests: ["a": "x"])
        #expect(diff.removed.map(\.id) == [1])
        #expect(diff.versionsToDrop == ["a"] && diff.digests.isEmpty)
    }

    @Test func aValidManifestClaimsADestinationBeforeAStandIn() {
        let broken = Self.manifest("b", "version: 1\nnot-a-key: 1\n")
        let stored = Self.manifest("b", Self.entries(["x"]))
        let diff = Self.diff(
            [Self.manifest("a", Self.entries(["x"])), broken],
            jobs: [],
            standIns: ["b": (stored, 10)],
            digests: ["b": "y"]
        )
        #expect(diff.added.count == 1 && diff.added.first?.manifest == "a")
    }
}
