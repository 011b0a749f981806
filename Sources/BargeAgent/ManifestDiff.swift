import BargeCore
import BargeStore

/// What the manifests read from the drop-in directory mean for the jobs: the supervisor's manifest step, pure
/// (the directory was read, and the stored versions that stand in for invalid manifests were fetched, before).
///
/// Fail closed: an invalid manifest keeps its jobs, from its good version of this run, else its stored last good
/// version, else whatever jobs the store holds for it; only entries that a readable, valid manifest no longer
/// names, or manifests whose files are gone, lose their jobs.
struct ManifestDiff {
    /// Each manifest as the agent knows it now.
    var known: [String: KnownManifest] = [:]
    /// Jobs to remove, each with whether its mirrored file goes too (its manifest said `prune`).
    var removed: [(id: Int64, prunes: Bool)] = []
    /// Jobs whose spec comes from the manifests now (changed or not: the caller compares).
    var kept: [(id: Int64, spec: JobSpec)] = []
    /// New jobs, in destination order (their ids follow it).
    var added: [JobSpec] = []
    /// New last good versions to store.
    var versionsToStore: [ManifestVersion] = []
    /// Manifests whose stored versions go (their files are gone).
    var versionsToDrop: [String] = []
    /// The digests of the stored last good versions after this step.
    var digests: [String: String]

    /// The diff of `loaded` against the jobs.
    ///
    /// - Parameters:
    ///   - standIns: for invalid manifests with no good version in this run, their stored last good version
    ///     parsed again, and when it was stored.
    ///   - previous: the manifests as known before.
    ///   - digests: the stored versions' digests before.
    ///   - excluding: destinations being added as one-shot jobs right now (left alone).
    ///   - holdingAbsent: the directory was just missing, unreadable or empty, and may still be being filled
    ///     again: a manifest absent from it keeps its jobs (and its stored version) for now.
    init(
        loaded: [LoadedManifest],
        standIns: [String: (manifest: LoadedManifest, storedAt: Double)],
        previous: [String: KnownManifest],
        jobs: [JobView],
        jobIDs: (String) -> Int64?,
        digests: [String: String],
        excluding: Set<String> = [],
        holdingAbsent: Bool = false,
        now: Double
    ) {
        self.digests = digests
        var desired: [String: JobSpec] = [:]
        desired.reserveCapacity(loaded.reduce(0) { $0 + ($1.specs?.count ?? 0) })
        var jobsOf: [String: [JobView]] = [:]
        let settling =
            loaded.contains { $0.specs?.contains { $0.upload?.isSettling == true } == true }
            || standIns.values.contains { $0.manifest.specs?.contains { $0.upload?.isSettling == true } == true }
        let jobsByID = settling ? Dictionary(jobs.map { ($0.record.id, $0) }, uniquingKeysWith: { $1 }) : [:]
        for view in jobs { if let manifest = view.spec.manifest { jobsOf[manifest, default: []].append(view) } }
        for manifest in loaded {
            let earlier = previous[manifest.id]
            var goodVersionStoredAt = earlier?.goodVersionStoredAt
            let standIn = manifest.specs == nil && earlier?.hasGoodVersion != true ? standIns[manifest.id] : nil
            var keepsStoredJobs = false
            if let specs = manifest.specs {
                for spec in specs {
                    guard spec.upload?.isSettling == true else {
                        desired[spec.destination] = spec
                        continue
                    }
                    // A file still being written: its job (if it has one) stays as it was until the file settles;
                    // none is made for it yet.
                    if let id = jobIDs(spec.destination), let view = jobsByID[id] {
                        desired[spec.destination] = view.spec
                    }
                }
                // Fail closed: an upload's file that could not be read now (no permission, out of descriptors) is
                // not gone; its job stays as it is.
                if !manifest.unreadableSources.isEmpty {
                    for view in jobsOf[manifest.id] ?? []
                    where view.spec.isUpload && desired[view.spec.destination] == nil
                        && manifest.unreadableSources.contains(where: { unreadable in
                            unreadable.hasSuffix("/")
                                ? view.spec.destination.hasPrefix(unreadable) : view.spec.destination == unreadable
                        })
                    {
                        desired[view.spec.destination] = view.spec
                    }
                }
                goodVersionStoredAt = nil
                if let digest = manifest.digest {
                    self.digests[manifest.id] = digest
                    if let text = manifest.newGoodText, digests[manifest.id] != digest {
                        self.versionsToStore.append(
                            ManifestVersion(
                                id: manifest.id,
                                path: manifest.path,
                                text: text,
                                digest: digest,
                                storedAt: now
                            )
                        )
                    }
                }
            } else if earlier?.hasGoodVersion == true {
                // Invalid now: its jobs are its last good version, and they keep running.
                for view in jobsOf[manifest.id] ?? [] { desired[view.spec.destination] = view.spec }
            } else if let standIn, standIn.manifest.specs != nil {
                goodVersionStoredAt = standIn.storedAt  // its specs join below, after the valid manifests'
            } else if let stored = jobsOf[manifest.id], !stored.isEmpty {
                // Jobs the store holds for an invalid manifest with nothing to stand in for it stay as they are.
                keepsStoredJobs = true
                for view in stored { desired[view.spec.destination] = view.spec }
            }
            self.known[manifest.id] = KnownManifest(
                path: manifest.path,
                hasGoodVersion: manifest.specs != nil || earlier?.hasGoodVersion == true
                    || standIn?.manifest.specs != nil || keepsStoredJobs,
                goodVersionStoredAt: goodVersionStoredAt,
                hooks: manifest.hooks ?? standIn?.manifest.hooks ?? earlier?.hooks ?? Hooks(),
                prune: manifest.prune ?? standIn?.manifest.prune ?? earlier?.prune ?? false,
                errors: manifest.errors,
                owner: manifest.owner
            )
        }
        // Stand-ins after the valid manifests: a destination another manifest now claims is theirs.
        for manifest in loaded where self.known[manifest.id]?.goodVersionStoredAt != nil && manifest.specs == nil {
            for spec in standIns[manifest.id]?.manifest.specs ?? [] where desired[spec.destination] == nil {
                if spec.upload?.isSettling == true {
                    if let id = jobIDs(spec.destination), let view = jobsByID[id] {
                        desired[spec.destination] = view.spec
                    }
                    continue
                }
                desired[spec.destination] = spec
            }
        }
        let present = Set(loaded.map(\.id))
        if holdingAbsent {
            for (id, views) in jobsOf where !present.contains(id) {
                for view in views where desired[view.spec.destination] == nil {
                    desired[view.spec.destination] = view.spec
                }
                if let earlier = previous[id] { self.known[id] = earlier }
            }
        }
        // A manifest whose file is gone takes its stored last good version with it.
        for id in self.digests.keys.sorted() where !present.contains(id) && !holdingAbsent {
            self.digests.removeValue(forKey: id)
            self.versionsToDrop.append(id)
        }
        // A manifest that said `prune` (its current version, or its last one when it was deleted) takes the
        // mirrored files of removed entries with it.
        for view in jobs where view.spec.manifest != nil && desired[view.spec.destination] == nil {
            let manifest = view.spec.manifest!
            let prunes = self.known[manifest]?.prune ?? previous[manifest]?.prune ?? false
            self.removed.append((view.record.id, prunes))
        }
        var new: [JobSpec] = []
        for (destination, spec) in desired where !excluding.contains(destination) {
            if let id = jobIDs(destination) {
                self.kept.append((id, spec))
            } else {
                new.append(spec)
            }
        }
        // In destination order; each destination's text is built once (a spec keeps it compactly, in two parts).
        self.added = new.map { (key: $0.destination, spec: $0) }.sorted { $0.key < $1.key }.map(\.spec)
    }
}
