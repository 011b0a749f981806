import BargeCore
import BargeLoader
import Foundation
import Glibc
import Testing

/// A scratch directory removed when the test ends.
final class ScratchDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/barge-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        self.path = String(cString: made)
    }

    @discardableResult
    func write(_ name: String, _ text: String, mode: mode_t = 0o644) throws -> String {
        let file = "\(self.path)/\(name)"
        try FileManager.default.createDirectory(
            atPath: PathRules.directory(of: file),
            withIntermediateDirectories: true
        )
        try text.write(toFile: file, atomically: false, encoding: .utf8)
        chmod(file, mode)
        return file
    }

    deinit { try? FileManager.default.removeItem(atPath: self.path) }
}

@Suite("ManifestLoader")
struct ManifestLoaderTests {
    func config(root: String) -> AgentConfig {
        var config = AgentConfig.defaults(scope: .system)
        config.allowedRoots = [root]
        return config
    }

    func manifest(dest: String, extra: String = "") -> String {
        "version: 1\ndownload:\n  - url: https://example.com/x\n    dest: \(dest)\n\(extra)"
    }

    @Test func readsOnlyManifestsInByteOrder() throws {
        let scratch = try ScratchDirectory()
        for name in [
            "20-b.yaml", "10-a.yml", "B.yaml", ".hidden.yaml", "a.yaml~", "x.yaml.dpkg-new", "y.rpmsave",
            "README", ".z.yaml.swp",
        ] {
            try scratch.write("d/\(name)", self.manifest(dest: "\(scratch.path)/out/\(name)"))
        }
        let loader = ManifestLoader(config: self.config(root: scratch.path))
        let parsed = try loader.load(paths: [scratch.path + "/d"])
        #expect(parsed.map(\.id) == ["10-a", "20-b", "B"])
        #expect(parsed.allSatisfy { $0.isValid })
    }

    /// File by file (as the agent loads) gives what loading the whole set at once gives, across the groups of
    /// files parsed together: order, validity, and a later file's claim on an earlier destination refused.
    @Test func oneFileAtATimeMatchesTheWholeSet() throws {
        let scratch = try ScratchDirectory()
        for index in 0..<11 {
            // File 9 claims file 2's destination; file 5 is broken.
            let dest = "\(scratch.path)/out/\(index == 9 ? 2 : index)"
            try scratch.write(
                "d/\(10 + index)-m.yaml",
                index == 5 ? "version: 1\ndownload: [\n" : self.manifest(dest: dest)
            )
        }
        let loader = ManifestLoader(config: self.config(root: scratch.path))
        let whole = try loader.load(paths: [scratch.path + "/d"])
        var streamed: [ParsedManifest] = []
        try loader.forEach(paths: [scratch.path + "/d"]) { streamed.append($0) }
        #expect(streamed.map(\.id) == whole.map(\.id))
        #expect(streamed.map(\.isValid) == whole.map(\.isValid))
        #expect(streamed.map { $0.diagnostics.map(\.description) } == whole.map { $0.diagnostics.map(\.description) })
        #expect(streamed.map(\.isValid) == (0..<11).map { $0 != 5 && $0 != 9 })
        #expect(streamed[9].diagnostics.contains { $0.message.contains("already claimed by") })
    }

    @Test func aBadManifestDoesNotStopTheGoodOnes() throws {
        let scratch = try ScratchDirectory()
        try scratch.write("d/10-good.yaml", self.manifest(dest: "\(scratch.path)/a"))
        try scratch.write("d/20-bad.yaml", "version: 1\ndownload: [\n")
        try scratch.write("d/30-good.yaml", self.manifest(dest: "\(scratch.path)/b"))
        let parsed = try ManifestLoader(config: self.config(root: scratch.path)).load(paths: [scratch.path + "/d"])
        #expect(parsed.map(\.isValid) == [true, false, true])
    }

    @Test func refusesManifestsOthersCanWrite() throws {
        let scratch = try ScratchDirectory()
        let file = try scratch.write("m.yaml", self.manifest(dest: "\(scratch.path)/a"), mode: 0o664)
        let parsed = ManifestLoader(config: self.config(root: scratch.path), agentUID: getuid()).load(file: file)
        #expect(!parsed.isValid)
        #expect(
            parsed.diagnostics.map(\.description) == [
                "\(file):1:1: error: manifest is writable by group or others (mode 0664), so the agent refuses it; "
                    + "run: chmod go-w \(file)"
            ]
        )
    }

    @Test(.enabled(if: getuid() == 0, "chown needs root"))
    func refusesManifestsOwnedBySomeoneElse() throws {
        let scratch = try ScratchDirectory()
        let file = try scratch.write("m.yaml", self.manifest(dest: "\(scratch.path)/a"))
        #expect(chown(file, 65534, 65534) == 0)
        let parsed = ManifestLoader(config: self.config(root: scratch.path), agentUID: 0).load(file: file)
        #expect(parsed.diagnostics.first?.message.contains("owned by uid 65534, not by root") == true)
        #expect(parsed.diagnostics.first?.message.contains("chown root:root \(file)") == true)
    }

    @Test func privateSecretFilesAreAccepted() throws {
        let scratch = try ScratchDirectory()
        let secret = try scratch.write("secrets/token", "abc\n", mode: 0o600)
        let file = try scratch.write(
            "m.yaml",
            self.manifest(dest: "\(scratch.path)/a", extra: "    auth: {bearer-file: \(secret)}\n")
        )
        let loader = ManifestLoader(config: self.config(root: scratch.path))
        #expect(loader.load(file: file).manifest?.downloads.first?.policy.credentials == .bearerFile(secret))
        chmod(secret, 0o604)
        #expect(loader.load(file: file).diagnostics.first?.message.contains("readable by others (mode 0604)") == true)
    }

    @Test func aDestinationSymlinkedToADirectoryIsADirectory() throws {
        let scratch = try ScratchDirectory()
        try FileManager.default.createDirectory(atPath: scratch.path + "/real", withIntermediateDirectories: true)
        #expect(symlink(scratch.path + "/real", scratch.path + "/link") == 0)
        let file = try scratch.write("m.yaml", self.manifest(dest: "\(scratch.path)/link"))
        let parsed = ManifestLoader(config: self.config(root: scratch.path)).load(file: file)
        #expect(parsed.diagnostics.first?.message.contains("names an existing directory") == true)
    }

    @Test func aMissingPathIsAnErrorNotAnEmptySet() throws {
        let loader = ManifestLoader(config: self.config(root: "/srv"))
        #expect(throws: ManifestLoader.PathError.self) { try loader.load(paths: ["/nonexistent/barge"]) }
    }

    @Test func configMissingDefaultMeansDefaultsButAnExplicitMissingFileIsAnError() throws {
        #expect(throws: ConfigLoader.ReadError.self) { try ConfigLoader.load(path: "/nonexistent/barge.yaml") }
        let scratch = try ScratchDirectory()
        let file = try scratch.write("barge.yaml", "manifests: m.d\nallowed-roots: [data]\n")
        let parsed = try ConfigLoader.load(path: file)
        #expect(parsed.config.manifestDirectory == scratch.path + "/m.d")
        #expect(parsed.config.allowedRoots == [scratch.path + "/data"])
    }
}
