import Foundation
import Testing

@Suite("barge check")
struct CheckCommandTests {
    let fixtures = BargeCommand.packageRoot + "/Tests/BargeLoaderTests/Fixtures"

    @Test func theExamplesAreValid() throws {
        let result = try BargeCommand.run(["check", "examples/manifests.d"])
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        let lines = result.standardOutput.split(separator: "\n")
        #expect(lines.count >= 5)
        #expect(
            lines.contains(
                "10-models: valid, 2 entries (2 downloads, 0 uploads), 97.8 MiB declared + 1 of unknown size"
            )
        )
        #expect(lines.contains { $0.hasPrefix("40-logs: valid, 1 entry (0 downloads, 1 upload)") })
        #expect(lines.last == "4 manifests, all valid")
    }

    @Test func anInvalidManifestExitsOneWithPositions() throws {
        let file = self.fixtures + "/bad/many-errors.yaml"
        let result = try BargeCommand.run(["check", "--config", self.fixtures + "/barge-test.yaml", file])
        #expect(result.status == 1)
        let lines = result.standardOutput.split(separator: "\n").map(String.init)
        #expect(lines.filter { $0.hasPrefix("\(file):") }.count == 5)
        #expect(lines.contains { $0.hasPrefix("\(file):8:13: error: 'soon' is not a valid priority") })
        #expect(lines.contains("many-errors: invalid, 5 errors (\(file))"))
    }

    @Test func jsonCarriesTheSameFacts() throws {
        let file = self.fixtures + "/bad/unknown-entry-key.yaml"
        let result = try BargeCommand.run(["check", "--json", "--config", self.fixtures + "/barge-test.yaml", file])
        #expect(result.status == 1)
        let root = try #require(
            try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any]
        )
        #expect(root["valid"] as? Bool == false)
        let manifests = try #require(root["manifests"] as? [[String: Any]])
        let diagnostics = try #require(manifests.first?["diagnostics"] as? [[String: Any]])
        #expect(diagnostics.map { "\($0["line"]!):\($0["column"]!)" } == ["5:5", "6:5"])
        #expect((diagnostics[1]["message"] as? String)?.contains("did you mean 'dest'?") == true)
    }

    @Test func goodFixturesSummarizeAsJSON() throws {
        let result = try BargeCommand.run([
            "check", "--json", "--config", self.fixtures + "/barge-test.yaml", self.fixtures + "/good",
        ])
        #expect(result.status == 0, "\(result.standardOutput)")
        let root = try #require(
            try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any]
        )
        let manifests = try #require(root["manifests"] as? [[String: Any]])
        let mirrors = try #require(manifests.first { $0["id"] as? String == "mirrors" })
        #expect(mirrors["declaredBytes"] as? Int == 4 << 30)
        #expect(mirrors["downloads"] as? Int == 1)
    }

    @Test func theConfiguredDirectoryIsTheDefault() throws {
        let scratch = NSTemporaryDirectory() + "barge-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch + "/manifests.d", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try "manifests: manifests.d\nallowed-roots: [/srv]\n".write(
            toFile: scratch + "/barge.yaml",
            atomically: false,
            encoding: .utf8
        )
        try "version: 1\ndownload: [{url: 'https://e.com/a', dest: /srv/a}]\n"
            .write(toFile: scratch + "/manifests.d/one.yaml", atomically: false, encoding: .utf8)
        let result = try BargeCommand.run(["check", "--config", scratch + "/barge.yaml"])
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        #expect(result.standardOutput.contains("one: valid, 1 entry"))
    }

    @Test func aBadConfigIsReportedWithItsPosition() throws {
        let scratch = NSTemporaryDirectory() + "barge-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try "allowed-schemes: [https, gopher]\n".write(
            toFile: scratch + "/barge.yaml",
            atomically: false,
            encoding: .utf8
        )
        let result = try BargeCommand.run(["check", "--config", scratch + "/barge.yaml", "examples/manifests.d"])
        #expect(result.status == 1)
        #expect(
            result.standardOutput.contains("\(scratch)/barge.yaml:1:26: error: 'gopher' is not a scheme barge speaks")
        )
    }

    @Test(arguments: [
        ["check", "/nonexistent/manifests.d"], ["check", "--frobnicate"], ["frobnicate"],
        ["check", "--config", "/nonexistent/barge.yaml", "examples/manifests.d"],
    ])
    func usageErrorsExitTwo(arguments: [String]) throws {
        let result = try BargeCommand.run(arguments)
        #expect(result.status == 2, "\(result.standardError)")
        #expect(!result.standardError.isEmpty)
    }

    @Test func helpListsTheCommands() throws {
        let result = try BargeCommand.run(["--help"])
        #expect(result.status == 0)
        #expect(result.standardOutput.contains("check"))
        #expect(result.standardOutput.contains("Validate manifests"))
    }
}

@Suite("docs/cli.md")
struct CLIDocumentationTests {
    /// The output shown after `$ COMMAND` in a ```sh block, up to the block's end.
    static func shownOutput(of command: String) throws -> [String] {
        let text = try String(contentsOfFile: BargeCommand.packageRoot + "/docs/cli.md", encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex(of: "$ \(command)"))
        let end = try #require(lines[start...].firstIndex(of: "```"))
        return Array(lines[(start + 1)..<end])
    }

    @Test(arguments: ["barge check examples/manifests.d", "barge check --json examples/manifests.d/30-os-image.yaml"])
    func theDocumentedOutputIsTheRealOutput(command: String) throws {
        let shown = try Self.shownOutput(of: command)
        let result = try BargeCommand.run(Array(command.split(separator: " ").dropFirst().map(String.init)))
        #expect(result.status == 0)
        #expect(
            result.standardOutput.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
                == shown
        )
    }
}
