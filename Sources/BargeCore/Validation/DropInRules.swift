/// Which files of a drop-in directory are manifests, and whether a manifest file may be trusted.
public enum DropInRules {
    /// Whether `fileName` is read as a manifest: `*.yaml` or `*.yml`, not a dotfile, editor backup or
    /// package-manager leftover (`.dpkg-*`, `.rpmnew`, `.rpmsave`, `.ucf-*`), as systemd and sudo do.
    public static func isManifestFileName(_ fileName: String) -> Bool {
        guard !fileName.hasPrefix("."), !fileName.hasSuffix("~") else { return false }
        let leftovers = [".dpkg-", ".rpmnew", ".rpmsave", ".ucf-", ".swp", ".bak", ".orig"]
        guard !leftovers.contains(where: { fileName.contains($0) }) else { return false }
        return self.manifestID(fileName: fileName) != nil
    }

    /// The manifest id of a file name: the name without `.yaml` or `.yml`; nil for other names.
    public static func manifestID(fileName: String) -> String? {
        for suffix in [".yaml", ".yml"] where fileName.hasSuffix(suffix) && fileName.count > suffix.count {
            return String(fileName.dropLast(suffix.count))
        }
        return nil
    }

    /// File names in the order the agent reads them: by their bytes, as `ls` does in the C locale.
    public static func sorted(_ fileNames: [String]) -> [String] {
        fileNames.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }

    /// Why a manifest file must not be trusted, or nil.
    ///
    /// A manifest decides what the agent writes where, so only its owner should be able to change it: it must
    /// be owned by root or by the agent's own user, and not writable by group or others.
    public static func trustProblem(status: FileStatus, path: String, agentUID: UInt32) -> String? {
        let owners = agentUID == 0 ? "root" : "root or uid \(agentUID)"
        if status.owner != 0 && status.owner != agentUID {
            let fix = agentUID == 0 ? "chown root:root \(path)" : "chown \(agentUID) \(path)"
            return "manifest is owned by uid \(status.owner), not by \(owners), so the agent refuses it; run: \(fix)"
        }
        if status.mode & 0o022 != 0 {
            let mode = FileStatus.octal(status.mode)
            return
                "manifest is writable by group or others (mode \(mode)), so the agent refuses it; run: chmod go-w \(path)"
        }
        return nil
    }
}
