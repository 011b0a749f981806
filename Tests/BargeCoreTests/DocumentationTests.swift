import Foundation
import Testing

@testable import BargeCore

/// Parses every YAML example of the reference documents, so the documentation cannot drift from the code.
@Suite("Documentation examples")
struct DocumentationTests {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The ```yaml blocks of a Markdown file, with the line each starts on.
    static func yamlBlocks(in document: String) throws -> [(line: Int, text: String)] {
        let text = try String(contentsOfFile: self.root + "/" + document, encoding: .utf8)
        var blocks: [(Int, String)] = []
        var current: [Substring]?
        var start = 0
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if current == nil, line == "```yaml" {
                current = []
                start = number + 2
            } else if current != nil, line == "```" {
                blocks.append((start, current!.joined(separator: "\n") + "\n"))
                current = nil
            } else if current != nil {
                current!.append(line)
            }
        }
        return blocks
    }

    /// Secret files named in the examples exist and are private, as they would on a configured machine.
    struct ExampleSecrets: FileFacts {
        func status(ofPath path: String) -> FileStatus? {
            path.hasPrefix("/etc/barge/secrets/") ? FileStatus(kind: .regular, mode: 0o600, owner: 0) : nil
        }
    }

    @Test func everyManifestExampleParses() throws {
        let blocks = try Self.yamlBlocks(in: "docs/manifest.md")
        #expect(blocks.count >= 7)
        var config = AgentConfig.defaults(scope: .system)
        config.allowedSchemes = AgentConfig.knownSchemes
        let parser = ManifestParser(config: config, facts: ExampleSecrets())
        for block in blocks {
            let parsed = parser.parse(text: block.text, path: "docs/manifest.md@\(block.line)", id: "doc")
            #expect(parsed.diagnostics.isEmpty, "example at docs/manifest.md:\(block.line): \(parsed.diagnostics)")
        }
    }

    @Test func everyConfigExampleParses() throws {
        let blocks = try Self.yamlBlocks(in: "docs/config.md")
        #expect(blocks.count >= 3)
        let parser = AgentConfigParser(defaults: .defaults(scope: .system))
        for block in blocks {
            let parsed = parser.parse(text: block.text, path: "/etc/barge/barge.yaml")
            #expect(parsed.diagnostics.isEmpty, "example at docs/config.md:\(block.line): \(parsed.diagnostics)")
        }
    }

    @Test func theSampleConfigParsesToTheDefaultsItClaims() throws {
        let text = try String(contentsOfFile: Self.root + "/etc/barge/barge.yaml", encoding: .utf8)
        let parsed = AgentConfigParser(defaults: .defaults(scope: .system)).parse(
            text: text,
            path: "/etc/barge/barge.yaml"
        )
        #expect(parsed.diagnostics.isEmpty, "\(parsed.diagnostics)")
        var expected = AgentConfig.defaults(scope: .system)
        expected.bandwidth = parsed.config.bandwidth
        expected.networks = parsed.config.networks
        #expect(parsed.config == expected)
        #expect(parsed.config.bandwidth.count == 2)
        #expect(parsed.config.networks.count == 2)
    }
}
