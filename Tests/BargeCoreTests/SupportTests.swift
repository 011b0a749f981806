import Testing

@testable import BargeCore

@Suite("Suggestion")
struct SuggestionTests {
    @Test func findsTheNearestKey() {
        #expect(Suggestion.nearest(to: "destt", in: ["url", "dest", "sha256"]) == "dest")
        #expect(Suggestion.nearest(to: "max_rate", in: ["max-rate", "mode"]) == "max-rate")
        #expect(Suggestion.nearest(to: "prioirty", in: ["priority", "network"]) == "priority")
        #expect(Suggestion.nearest(to: "colour", in: ["url", "dest"]) == nil)
    }
}

@Suite("PathRules")
struct PathRulesTests {
    @Test func normalizes() {
        #expect(PathRules.normalize("/srv//a/b") == .success("/srv/a/b"))
        #expect(PathRules.normalize("srv/a") == .failure(.relative))
        #expect(PathRules.normalize("/srv/../etc/passwd") == .failure(.dotComponent("..")))
        #expect(PathRules.normalize("/srv/./a") == .failure(.dotComponent(".")))
        #expect(PathRules.normalize("/srv/a/") == .failure(.trailingSlash))
        #expect(PathRules.normalize("/srv/a/", allowTrailingSlash: true) == .success("/srv/a"))
    }

    @Test func rootsCompareByComponent() {
        #expect(PathRules.isPath("/srv/a", below: "/srv"))
        #expect(PathRules.isPath("/srv", below: "/srv"))
        #expect(!PathRules.isPath("/srvx/a", below: "/srv"))
        #expect(PathRules.isPath("/anything", below: "/"))
    }

    @Test func resolvesRelativeConfigPaths() {
        #expect(PathRules.resolve("manifests.d", against: "/etc/barge") == "/etc/barge/manifests.d")
        #expect(PathRules.resolve("../state", against: "/work/etc") == "/work/state")
        #expect(PathRules.resolve("./x", against: "/a") == "/a/x")
        #expect(PathRules.resolve("/abs", against: "/a") == "/abs")
    }

    /// Split at the last slash, whatever follows it: a name that starts with a combining mark keeps it.
    @Test func splitsAPathIntoDirectoryAndFileName() {
        #expect(PathRules.directory(of: "/srv/a/b.bin") == "/srv/a")
        #expect(PathRules.fileName(of: "/srv/a/b.bin") == "b.bin")
        #expect(PathRules.directory(of: "/b.bin") == "/")
        #expect(PathRules.directory(of: "b.bin") == ".")
        #expect(PathRules.fileName(of: "b.bin") == "b.bin")
        #expect(PathRules.directory(of: "/a/\u{301}b") == "/a")
        #expect(PathRules.fileName(of: "/a/\u{301}b") == "\u{301}b")
        #expect(PathRules.fileName(of: "/dir/é.bin") == "é.bin")
    }

    @Test func globPrefix() {
        #expect(PathRules.literalPrefix(ofGlob: "/var/log/app/*.gz") == "/var/log/app")
        #expect(PathRules.literalPrefix(ofGlob: "/srv/a/b.log") == "/srv/a/b.log")
    }
}

@Suite("DropInRules")
struct DropInRulesTests {
    @Test(arguments: [
        ("10-models.yaml", true), ("a.yml", true), (".hidden.yaml", false), ("a.yaml~", false),
        ("a.yaml.dpkg-new", false), ("a.dpkg-dist.yaml", false), ("a.rpmnew.yaml", false), ("a.yaml.rpmsave", false),
        (".a.yaml.swp", false), ("README", false), ("notes.txt", false), (".yaml", false), ("a.json", false),
    ])
    func picksManifestFiles(name: String, isManifest: Bool) {
        #expect(DropInRules.isManifestFileName(name) == isManifest)
    }

    @Test func sortsByBytes() {
        #expect(
            DropInRules.sorted(["b.yaml", "B.yaml", "a.yaml", "10.yaml", "9.yaml"])
                == ["10.yaml", "9.yaml", "B.yaml", "a.yaml", "b.yaml"]
        )
    }

    @Test func trustsOnlyOwnerWritableManifests() {
        let good = FileStatus(kind: .regular, mode: 0o644, owner: 0)
        #expect(DropInRules.trustProblem(status: good, path: "/m.yaml", agentUID: 0) == nil)
        let groupWritable = FileStatus(kind: .regular, mode: 0o664, owner: 0)
        #expect(
            DropInRules.trustProblem(status: groupWritable, path: "/m.yaml", agentUID: 0)?.contains(
                "chmod go-w /m.yaml"
            ) == true
        )
        let foreign = FileStatus(kind: .regular, mode: 0o644, owner: 1000)
        #expect(
            DropInRules.trustProblem(status: foreign, path: "/m.yaml", agentUID: 0)?.contains("chown root:root") == true
        )
        #expect(DropInRules.trustProblem(status: foreign, path: "/m.yaml", agentUID: 1000) == nil)
    }
}
