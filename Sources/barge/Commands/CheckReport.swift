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
        var text = "\(parsed.id): valid, \(manifest.entryCount) entr\(manifest.entryCount == 1 ? "y" : "ies") "
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

    func json() -> String {
        func diagnostics(_ list: [Diagnostic]) -> [[String: Any]] {
            list.map {
                [
                    "file": $0.location.file, "line": $0.location.line, "column": $0.location.column,
                    "severity": $0.severity.rawValue, "message": $0.message,
                ]
            }
        }
        let manifests: [[String: Any]] = self.manifests.map { parsed in
            var object: [String: Any] = [
                "id": parsed.id, "path": parsed.path, "valid": parsed.isValid,
                "diagnostics": diagnostics(parsed.diagnostics),
            ]
            if let manifest = parsed.manifest {
                let size = manifest.declaredSize
                object["entries"] = manifest.entryCount
                object["downloads"] = manifest.downloads.count
                object["uploads"] = manifest.uploads.count
                object["declaredBytes"] = size.total.bytes
                object["undeclaredSizes"] = size.undeclared
            }
            return object
        }
        let root: [String: Any] = [
            "valid": self.isValid,
            "config": ["diagnostics": diagnostics(self.config.diagnostics)],
            "manifests": manifests,
        ]
        let data = try! JSONSerialization.data(withJSONObject: root, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}
