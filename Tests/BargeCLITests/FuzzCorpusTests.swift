import BargeCore
import Foundation
import Testing

@testable import barge_fuzz

/// The fuzz targets' properties (`scripts/fuzz.sh`), on the committed corpus and on inputs that break them.
@Suite("Fuzz corpus")
struct FuzzCorpusTests {
    /// Every committed input, and the seeds the fuzzer starts from, hold every property, replayed by the
    /// ordinary build of `barge-fuzz` (the inputs the fuzzer found are kept in Tests/Fuzz/TARGET once fixed).
    @Test(arguments: ["manifest", "config", "units"])
    func theCorpusHolds(target: String) throws {
        let root = BargeCommand.packageRoot
        let seeds: [String] =
            switch target {
            case "manifest":
                ["examples/manifests.d"]
                    + ["good", "bad", "dup-across"].map { "Tests/BargeLoaderTests/Fixtures/" + $0 }
            case "config": ["etc/barge/barge.yaml", "Tests/BargeLoaderTests/Fixtures/barge-test.yaml"]
            default: []
            }
        let binary = URL(fileURLWithPath: BargeCommand.executable).deletingLastPathComponent().path + "/barge-fuzz"
        let result = try BargeCommand.run(
            executable: binary,
            (seeds + ["Tests/Fuzz/" + target]).map { root + "/" + $0 },
            environment: ["BARGE_FUZZ_TARGET": target]
        )
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("barge-fuzz: \(target): "), "\(result.standardOutput)")
    }

    /// Lines as libyaml counts them: CR LF once, a lone CR, NEL, LS and PS each end one.
    @Test func linesEndAsYAMLEndsThem() {
        #expect(FuzzTarget.yamlLineWidths("ab\r\ncd\ref\u{85}g\u{2028}h\u{2029}ij\n") == [2, 2, 2, 1, 1, 2, 0])
        #expect(FuzzTarget.yamlLineWidths("") == [0])
    }

    /// A diagnostic placed past the text, or a path let through outside the roots, is reported.
    @Test func brokenPropertiesAreReported() {
        func at(_ line: Int, _ column: Int) -> Diagnostic {
            Diagnostic(.error, at: SourceLocation(file: "m.yaml", line: line, column: column), "x")
        }
        #expect(FuzzTarget.checkDiagnostics([at(4, 1)], in: "a: 1\n", file: "m.yaml") != nil)
        #expect(FuzzTarget.checkDiagnostics([at(1, 7)], in: "a: 1\n", file: "m.yaml") != nil)
        #expect(FuzzTarget.checkDiagnostics([at(1, 5), at(2, 1)], in: "a: 1\n", file: "m.yaml") == nil)
        #expect(FuzzTarget.checkConfined("/srv", roots: ["/srv"], mayBeRoot: false) != nil)
        #expect(FuzzTarget.checkConfined("/srv", roots: ["/srv"], mayBeRoot: true) == nil)
        #expect(FuzzTarget.checkConfined("/srv/../etc/x", roots: ["/srv"], mayBeRoot: false) != nil)
        #expect(FuzzTarget.checkConfined("/srvx/a", roots: ["/srv"], mayBeRoot: false) != nil)
        #expect(FuzzTarget.checkConfined("/srv/a/b", roots: ["/srv"], mayBeRoot: false) == nil)
    }
}
