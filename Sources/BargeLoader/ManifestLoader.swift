public import BargeCore
import Foundation
import Glibc
import Synchronization

/// Reads manifests from disk: files, or drop-in directories expanded in lexical order, each checked for
/// ownership, parsed, and then checked as a set.
public struct ManifestLoader: Sendable {
    /// The config that bounds manifests.
    public let config: AgentConfig
    /// The uid manifests must belong to (besides root): the agent's effective uid.
    public let agentUID: UInt32
    /// The facts used while validating.
    public let facts: any FileFacts

    /// Creates a loader.
    ///
    /// - Parameter agentUID: the uid manifests may belong to besides root; default: this process's effective uid.
    public init(config: AgentConfig, agentUID: UInt32? = nil, facts: any FileFacts = LocalFileFacts()) {
        self.config = config
        self.agentUID = agentUID ?? geteuid()
        self.facts = facts
    }

    /// A path given to the loader that does not exist or cannot be listed.
    public struct PathError: Error, Sendable, CustomStringConvertible {
        /// The path.
        public var path: String
        /// What is wrong.
        public var reason: String
        public var description: String { "\(self.path): \(self.reason)" }
    }

    /// The manifest files a path stands for: the path itself for a file, the manifests in it for a directory.
    ///
    /// - Throws: ``PathError`` when the path does not exist or the directory cannot be read.
    public func manifestFiles(at path: String) throws(PathError) -> [String] {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw PathError(path: path, reason: String(cString: strerror(errno)))
        }
        guard info.st_mode & S_IFMT == S_IFDIR else { return [path] }
        guard let stream = opendir(path) else {
            throw PathError(path: path, reason: "cannot list the directory: \(String(cString: strerror(errno)))")
        }
        defer { closedir(stream) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                // A read that fails part-way is not the end of the list: it lists nothing rather than part of it.
                if errno != 0 {
                    throw PathError(
                        path: path,
                        reason: "cannot list the directory: \(String(cString: strerror(errno)))"
                    )
                }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            names.append(name)
        }
        let directory = path.hasSuffix("/") ? String(path.dropLast()) : path
        return DropInRules.sorted(names.filter(DropInRules.isManifestFileName)).map { "\(directory)/\($0)" }
    }

    /// Loads the manifests that `paths` stand for (files or directories), in order, as one set.
    ///
    /// - Throws: ``PathError`` for a path that does not exist; problems inside files are diagnostics instead.
    public func load(paths: [String]) throws(PathError) -> [ParsedManifest] {
        var loaded: [ParsedManifest] = []
        try self.forEach(paths: paths) { loaded.append($0) }
        return loaded
    }

    /// Loads the manifests that `paths` stand for like ``load(paths:)``, but hands each one, checked against the
    /// earlier ones, to `body` in order and keeps none: a few files are parsed at once (they parse independently,
    /// so over the cores) and let go once handed on, so 100,000s of entries never sit in memory together.
    ///
    /// - Throws: ``PathError`` for a path that does not exist; problems inside files are diagnostics instead.
    public func forEach(paths: [String], _ body: (ParsedManifest) -> Void) throws(PathError) {
        var found: [String] = []
        for path in paths { found += try self.manifestFiles(at: path) }
        let files = found
        var validator = ManifestSet.Validator()
        let group = max(2, ProcessInfo.processInfo.activeProcessorCount * 2)
        for start in stride(from: 0, to: files.count, by: group) {
            let chunk = Array(files[start..<min(start + group, files.count)])
            let results = Mutex<[ParsedManifest?]>(Array(repeating: nil, count: chunk.count))
            DispatchQueue.concurrentPerform(iterations: chunk.count) { index in
                let parsed = self.load(file: chunk[index])
                results.withLock { $0[index] = parsed }
            }
            for parsed in results.withLock({ $0 }) { body(validator.validate(parsed!)) }
        }
    }

    /// Loads one manifest file; every problem, reading it included, becomes a diagnostic.
    public func load(file path: String) -> ParsedManifest {
        let name = PathRules.fileName(of: path)
        let id = DropInRules.manifestID(fileName: name) ?? name
        func failed(_ message: String) -> ParsedManifest {
            ParsedManifest(id: id, path: path, manifest: nil, diagnostics: [.error(at: .start(of: path), message)])
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return failed("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return failed("cannot stat: \(String(cString: strerror(errno)))") }
        let status = FileStatus(info)
        guard status.kind == .regular else { return failed("not a regular file") }
        if let problem = DropInRules.trustProblem(status: status, path: path, agentUID: self.agentUID) {
            return failed(problem)
        }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: false)
        let data: Data
        do {
            data = try handle.readToEnd() ?? Data()
        } catch {
            return failed("cannot read: \(error.localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else { return failed("not UTF-8 text") }
        var parsed = ManifestParser(config: self.config, facts: self.facts).parse(text: text, path: path, id: id)
        parsed.text = text
        return parsed
    }
}
