import BargeCore
import Foundation

/// What `barge check` prints: diagnostics, then a summary line per manifest; or the same as JSON.
struct CheckReport {
    let config: ParsedAgentConfig
    let manifests: [ParsedManifest]

    var isValid: Bool {
        !self.config.diagnostics.containsError && self.manifests.allSatisfy(\.isValid)
    }

    func text() -> String {
        var lines: [String] = []
        lines += self.config.diagnostics.map(\.description)
        for parsed in self.manifests { lines += parsed.diagnostics.map(\.description) }
        for parsed in self.manifests { lines.append(Self.summary(parsed)) }
        if self.manifests.isEmpty { lines.append("no manifests found") }
        let invalid = self.manifests.count { !$0.isValid }
        lines.append(
            "\(self.manifests.count) manifest\(self.manifests.count == 1 ? "" : "s"), "
                + (invalid == 0 ? "all valid" : "\(invalid) invalid")
                + (self.config.diagnostics.containsError ? "; the config has errors" : "")
        )
        return lines.joined(separator: "\n") + "\n"
    }

    static func summary(_ parsed: ParsedManifest) -> String {
        guard let manifest = parsed.manifest else {
            let errors = parsed.diagnostics.count { $0.severity == .error }
            return "\(parsed.id): invalid, \(errors) error\(errors == 1 ? "" : "s") (\(parsed.path))"
        }
        var text =
            "\(parsed.id): valid, \(manifest.entryCount) entr\(manifest.entryCount == 1 ? "y" : "ies") "
            + "(\(manifest.downloads.count) download\(manifest.downloads.count == 1 ? "" : "s"), "
            + "\(manifest.uploads.count) upload\(manifest.uploads.count == 1 ? "" : "s"))"
        let size = manifest.declaredSize
        if !manifest.downloads.isEmpty {
            if size.undeclared == 0 {
                text += ", \(size.total.humanReadable) declared"
            } else if size.total.bytes > 0 {
                text += ", \(size.total.humanReadable) declared + \(size.undeclared) of unknown size"
            } else {
                text += ", size unknown"
            }
        }
        return text
    }

    /// The JSON shape of `barge check --json`, documented in docs/cli.md.
    struct JSONReport: Encodable {
        struct Item: Encodable {
            var file: String
            var line: Int
            var column: Int
            var severity: Diagnostic.Severity
            var message: String

            init(_ diagnostic: Diagnostic) {
                self.file = diagnostic.location.file
                self.line = diagnostic.location.line
                self.column = diagnostic.location.column
                self.severity = diagnostic.severity
                self.message = diagnostic.message
            }
        }

        struct Config: Encodable {
            var diagnostics: [Item]
        }

        struct ManifestSummary: Encodable {
            var id: String
            var path: String
            var valid: Bool
            var diagnostics: [Item]
            var entries: Int?
            var downloads: Int?
            var uploads: Int?
            var declaredBytes: UInt64?
            var undeclaredSizes: Int?
        }

        var valid: Bool
        var config: Config
        var manifests: [ManifestSummary]
    }

    func json() -> String {
        let report = JSONReport(
            valid: self.isValid,
            config: .init(diagnostics: self.config.diagnostics.map(JSONReport.Item.init)),
            manifests: self.manifests.map { parsed in
                let manifest = parsed.manifest
                return JSONReport.ManifestSummary(
                    id: parsed.id,
                    path: parsed.path,
                    valid: parsed.isValid,
                    diagnostics: parsed.diagnostics.map(JSONReport.Item.init),
                    entries: manifest?.entryCount,
                    downloads: manifest?.downloads.count,
                    uploads: manifest?.uploads.count,
                    declaredBytes: manifest?.declaredSize.total.bytes,
                    undeclaredSizes: manifest?.declaredSize.undeclared
                )
            }
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try! encoder.encode(report)  // Encoding plain strings and numbers cannot fail.
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
