/// The manifests of a drop-in directory taken together: checks that need more than one file.
public enum ManifestSet {
    /// Marks later claims on an already-claimed destination, and later files with an already-used id, as errors.
    ///
    /// `manifests` must be in lexical file order: the first manifest to claim a destination owns it. A manifest that
    /// gains an error here becomes invalid (its `manifest` is set to nil), exactly as if the error were its own.
    public static func validate(_ manifests: [ParsedManifest]) -> [ParsedManifest] {
        var validator = Validator()
        return manifests.map { validator.validate($0) }
    }

    /// The same checks one file at a time, in lexical file order, so a caller can let each file's entries go
    /// before the next is read: it remembers only the ids and claimed destinations seen so far.
    public struct Validator: Sendable {
        private var owners: [String: SourceLocation] = [:]
        private var ids: [String: String] = [:]

        /// A validator that has seen no file yet.
        public init() {}

        /// Checks the next manifest against the earlier ones (see ``ManifestSet/validate(_:)``).
        public mutating func validate(_ parsed: ParsedManifest) -> ParsedManifest {
            var parsed = parsed
            var added: [Diagnostic] = []
            if let other = self.ids[parsed.id] {
                added.append(
                    .error(
                        at: .start(of: parsed.path),
                        "manifest id '\(parsed.id)' is already used by \(other); rename one of the two files"
                    )
                )
            } else {
                self.ids[parsed.id] = parsed.path
            }
            if let manifest = parsed.manifest {
                for entry in manifest.downloads {
                    if let owner = self.owners[entry.destination] {
                        added.append(
                            .error(
                                at: entry.location,
                                "destination '\(entry.destination)' is already claimed by \(owner); "
                                    + "the first manifest in file-name order owns it"
                            )
                        )
                    }
                }
                if added.isEmpty {
                    for entry in manifest.downloads { self.owners[entry.destination] = entry.location }
                }
            }
            if !added.isEmpty {
                parsed.diagnostics = (parsed.diagnostics + added).sorted { $0.location < $1.location }
                parsed.manifest = nil
            }
            return parsed
        }
    }
}
