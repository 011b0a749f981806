import BargeCore
import PropertyBased
import Testing

@Suite struct JobTableTests {
    static func view(_ id: Int64, _ destination: String, url: String = "https://origin.test/a/file.bin") -> JobView {
        JobView(
            spec: JobSpec(manifest: "m", urls: [url], destination: destination),
            record: JobRecord(id: id),
            isRunning: false
        )
    }

    @Test func compactTextKeepsTheWholeText() {
        for text in [
            "", "/", "name", "/srv/a/b.bin", "https://h/x/", "/dir/a-very-long-file-name-indeed.tar.gz", "a/é/ü",
        ] {
            let compact = SharedHeadText(text)
            #expect(compact.text == text)
            #expect(compact.equals(Substring(text)))
            #expect(!compact.equals(Substring(text + "x")))
            #expect(compact.hash64 == SharedHeadText.hash64(of: Substring(text)))
            #expect(compact == SharedHeadText(text))
        }
        #expect(SharedHeadText("/a/b") != SharedHeadText("/a/c"))
        #expect(SharedHeadText("/a/b") != SharedHeadText("/c/b"))
    }

    /// A spec's host comes from the shared head of its URL where that holds the whole authority, else from the
    /// whole URL: the same as ``URLRules/host(of:)`` either way.
    @Test func specsNameTheirURLsHost() {
        let cases = [
            ("https://user@h.example:99/a?b", "h.example:99"), ("file:///srv/x", "this machine"),
            ("http://h.example", "h.example"), ("http://h.example?x=/y", "h.example"),
            ("http://u@h.example/", "h.example"), ("https://h.example/a/b/c.bin", "h.example"),
            ("http://[::1]:8080/x", "[::1]:8080"), ("not a url", "not a url"),
            // "://" later than the scheme's ":" is not an authority: no host, whatever the shared head holds.
            ("file:/srv/a://b/c", "file:/srv/a://b/c"),
        ]
        for (url, host) in cases {
            #expect(URLRules.host(of: url) == host, "\(url)")
            #expect(JobSpec(manifest: nil, urls: [url], destination: "/d").host == host, "\(url)")
        }
        #expect(JobSpec(manifest: nil, urls: [], destination: "/d").host == "")
    }

    @Test func specsKeepWhatTheyAreGiven() {
        var spec = JobSpec(
            manifest: "models",
            urls: ["https://a.test/x/model.bin", "https://b.test/y/model.bin"],
            destination: "/srv/models/model.bin",
            sha256: String(repeating: "c", count: 64),
            size: 42
        )
        #expect(spec.urls == ["https://a.test/x/model.bin", "https://b.test/y/model.bin"])
        #expect(spec.url == "https://a.test/x/model.bin" && spec.destination == "/srv/models/model.bin")
        #expect(spec.sha256 == String(repeating: "c", count: 64) && spec.size == 42 && spec.manifest == "models")
        spec.size = nil
        spec.urls = ["file:///mnt/share/model.bin"]
        #expect(spec.urls == ["file:///mnt/share/model.bin"] && spec.size == nil && spec.sha256 != nil)
        spec.sha256 = nil
        #expect(
            spec
                == JobSpec(
                    manifest: "models",
                    urls: ["file:///mnt/share/model.bin"],
                    destination: "/srv/models/model.bin"
                )
        )
        #expect(JobSpec(manifest: nil, urls: [], destination: "/x").urls.isEmpty)
    }

    @Test func recordsKeepOptionalTimesAndSizes() {
        var record = JobRecord(id: 7)
        #expect(record.dueAt == nil && record.totalBytes == nil && record.completedAt == nil && record.attempts == 0)
        record.dueAt = 0
        record.totalBytes = 0
        record.firstFailureAt = -5
        record.lastStartedAt = 1.5
        record.completedAt = 1e10
        record.attempts = 3
        #expect(record.dueAt == 0 && record.totalBytes == 0 && record.firstFailureAt == -5)
        #expect(record.lastStartedAt == 1.5 && record.completedAt == 1e10 && record.attempts == 3)
        record.dueAt = nil
        #expect(record.dueAt == nil)
    }

    @Test func anUpToDateJobSaysWhenItIsNextChecked() {
        var record = JobRecord(id: 1)
        record.state = .upToDate
        record.reason = ""
        record.totalBytes = 1 << 20
        record.dueAt = 1_000 + 3_600
        #expect(record.statusReason(now: 1_000) == "mirrored 1 MiB; next check in 1h")
        record.dueAt = 1_000 + 7_261
        #expect(record.statusReason(now: 1_000) == "mirrored 1 MiB; next check in 2h2m")
        record.dueAt = 1_000 + 61
        #expect(record.statusReason(now: 1_000) == "mirrored 1 MiB; next check in 1m1s")
        record.dueAt = nil
        #expect(record.statusReason(now: 1_000) == "mirrored 1 MiB; never re-checked")
        record.state = .error
        record.reason = "hash mismatch"
        #expect(record.statusReason(now: 1_000) == "hash mismatch")
    }

    @Test func findsJobsByIdAndDestinationThroughInsertsChangesAndRemovals() async {
        // Random operations against a plain dictionary as the model.
        let operations = zip(Gen.int(in: 0...3), Gen.int(in: 1...60), Gen.int(in: 0...40)).array(of: 0...200)
        await propertyCheck(count: 200, input: operations) { operations in
            var table = JobTable()
            var model: [Int64: String] = [:]
            var nextID: Int64 = 1
            for (kind, target, name) in operations {
                let destination = "/srv/d\(name % 7)/file-\(name).bin"
                switch kind {
                case 0 where !model.values.contains(destination):
                    table.insert(Self.view(nextID, destination))
                    model[nextID] = destination
                    nextID += 1
                case 1:
                    let ids = Set(model.keys.filter { $0 % Int64(target) == 0 })
                    #expect(Set(table.remove(ids).map(\.record.id)) == ids)
                    for id in ids { model[id] = nil }
                case 2 where !model.values.contains(destination):
                    let id = Int64(target)
                    let changed: Void? = table.modify(id) { $0.spec.destination = destination }
                    #expect((changed != nil) == (model[id] != nil))
                    if model[id] != nil { model[id] = destination }
                default:
                    table.compact()
                }
            }
            #expect(table.count == model.count)
            #expect(table.views.map(\.record.id) == model.keys.sorted())
            for (id, destination) in model {
                #expect(table[id]?.spec.destination == destination)
                #expect(table.id(forDestination: destination) == id)
            }
            #expect(table.id(forDestination: "/srv/none") == nil)
        }
    }

    @Test func aReusedSmallerIdKeepsTheOrder() {
        var table = JobTable([Self.view(5, "/a/5"), Self.view(2, "/a/2")])
        #expect(table.views.map(\.record.id) == [2, 5])
        table.insert(Self.view(3, "/a/3"))
        #expect(table.views.map(\.record.id) == [2, 3, 5])
        #expect(table.id(forDestination: "/a/3") == 3 && table.id(forDestination: "/a/5") == 5)
    }
}
