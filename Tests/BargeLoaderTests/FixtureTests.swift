import BargeCore
import BargeLoader
import Foundation
import Testing

/// Every bad fixture names the exact position and a fragment of each error it must produce, and nothing else;
/// every good fixture must load without a diagnostic.
@Suite("Fixtures")
struct FixtureTests {
    @Test func thereAreEnoughFixtures() {
        #expect(Fixtures.files(in: "bad").count >= 40)
        #expect(Fixtures.files(in: "good").count >= 10)
    }

    @Test(arguments: Fixtures.files(in: "bad"))
    func badFixtureReportsExactlyItsErrors(file: String) throws {
        let expectations = try Fixtures.expectations(in: file)
        try #require(!expectations.isEmpty, "\(file) has no '# expect:' line")
        let parsed = ManifestLoader(config: try Fixtures.config).load(file: file)
        #expect(!parsed.isValid)
        let errors = parsed.diagnostics.filter { $0.severity == .error }
        for error in errors { #expect(error.location.file == file) }
        for expectation in expectations {
            let match = errors.contains {
                $0.location.line == expectation.line && $0.location.column == expectation.column
                    && $0.message.contains(expectation.fragment)
            }
            #expect(
                match,
                "expected \(expectation) in \(file); got:\n\(errors.map(\.description).joined(separator: "\n"))"
            )
        }
        #expect(errors.count == expectations.count, "\(errors.map(\.description).joined(separator: "\n"))")
    }

    @Test(arguments: Fixtures.files(in: "good"))
    func goodFixtureLoadsCleanly(file: String) throws {
        let parsed = ManifestLoader(config: try Fixtures.config).load(file: file)
        #expect(parsed.diagnostics.isEmpty, "\(parsed.diagnostics.map(\.description))")
        let manifest = try #require(parsed.manifest)
        #expect(manifest.entryCount > 0)
    }

    @Test func goodFixturesTogetherFormAValidSet() throws {
        let parsed = try ManifestLoader(config: try Fixtures.config).load(paths: [Fixtures.directory + "/good"])
        #expect(parsed.count == Fixtures.files(in: "good").count)
        #expect(parsed.allSatisfy { $0.isValid })
    }

    @Test func aDestinationClaimedTwiceAcrossManifestsNamesBothPlaces() throws {
        let parsed = try ManifestLoader(config: try Fixtures.config).load(paths: [Fixtures.directory + "/dup-across"])
        #expect(parsed.map(\.id) == ["10-first", "20-second"])
        #expect(parsed[0].isValid)
        let second = parsed[1]
        #expect(!second.isValid)
        let expectations = try Fixtures.expectations(in: second.path)
        #expect(expectations.count == 1)
        for expectation in expectations {
            #expect(
                second.diagnostics.contains {
                    $0.location.line == expectation.line && $0.location.column == expectation.column
                        && $0.message.contains(expectation.fragment)
                },
                "\(second.diagnostics)"
            )
        }
    }
}
