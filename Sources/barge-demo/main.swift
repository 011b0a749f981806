// barge-demo: prepares the README's main job (scripts/run.sh): the example manifests, rewritten to mirror from a
// local origin into a demo directory, and that origin's files.
//
//   barge-demo EXAMPLES_DIR DEMO_DIR PORT
//
// For every download entry of the examples it writes content (the declared size, at most 24 MiB; 4 MiB when
// undeclared) under DEMO_DIR/origin/HOST/PATH, and rewrites the manifest: URLs to http://127.0.0.1:PORT/HOST/PATH,
// destinations and upload paths below DEMO_DIR/root, SHA-256 pins to the generated content's. An entry with
// mirrors gets its content on the last mirror only, so the agent shows its fail-over. It also writes
// DEMO_DIR/barge.yaml, the agent config of the demo.
import BargeCore
import BargeLoader
import Crypto
import Foundation

let arguments = CommandLine.arguments
guard arguments.count == 4 || arguments.count == 5, let port = Int(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: barge-demo EXAMPLES_DIR DEMO_DIR PORT [TUS_PORT]\n".utf8))
    exit(2)
}
/// The local tus server the example uploads go to (none: they keep their example URL and fail to resolve).
let tusPort = arguments.count == 5 ? Int(arguments[4]) : nil
let examples = arguments[1]
let demo = arguments[2]
let root = demo + "/root"
let origin = demo + "/origin"
let fileManager = FileManager.default

var permissive = AgentConfig.defaults(scope: .system)
permissive.allowedRoots = ["/"]
let parser = ManifestParser(config: permissive)

/// Deterministic content for a destination: the demo's hashes are the same on every run.
func content(size: Int, seed: String) -> Data {
    var data = Data(capacity: size)
    var block = Array(SHA256.hash(data: Data(seed.utf8)))
    while data.count < size {
        data.append(contentsOf: block.prefix(size - data.count))
        if data.count % 65_536 == 0 { block = Array(SHA256.hash(data: Data(block))) }
    }
    return data
}

func originPath(of url: String) -> (path: String, local: String)? {
    guard let parsed = URL(string: url), let host = parsed.host else { return nil }
    return ("\(origin)/\(host)\(parsed.path)", "http://127.0.0.1:\(port)/\(host)\(parsed.path)")
}

try fileManager.createDirectory(atPath: demo + "/manifests.d", withIntermediateDirectories: true)
let names = try fileManager.contentsOfDirectory(atPath: examples).filter(DropInRules.isManifestFileName)
for name in DropInRules.sorted(names) {
    let path = examples + "/" + name
    var text = try String(contentsOfFile: path, encoding: .utf8)
    let parsed = parser.parse(text: text, path: path, id: DropInRules.manifestID(fileName: name) ?? name)
    guard let manifest = parsed.manifest else {
        FileHandle.standardError.write(Data("\(name): not valid, left out: \(parsed.diagnostics)\n".utf8))
        continue
    }
    for entry in manifest.downloads {
        let size = Int(min(entry.size?.bytes ?? 4 << 20, 24 << 20))
        let bytes = content(size: size, seed: entry.destination)
        for (index, url) in entry.urls.enumerated() {
            guard let (file, local) = originPath(of: url) else { continue }
            if index == entry.urls.count - 1 {
                try fileManager.createDirectory(
                    atPath: (file as NSString).deletingLastPathComponent,
                    withIntermediateDirectories: true
                )
                try bytes.write(to: URL(fileURLWithPath: file))
            }
            text = text.replacingOccurrences(of: url, with: local)
        }
        if let pinned = entry.sha256 {
            let actual = SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
            text = text.replacingOccurrences(of: pinned, with: actual)
        }
    }
    // Declared sizes are the real files'; the demo's are smaller.
    text = text.split(separator: "\n", omittingEmptySubsequences: false)
        .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("size:") }.joined(separator: "\n")
    for key in ["dest", "src", "move-to"] {
        text = text.replacingOccurrences(of: "\(key): /", with: "\(key): \(root)/")
    }
    for entry in manifest.uploads {
        let directory = root + PathRules.literalPrefix(ofGlob: entry.source)
        try fileManager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // Two rotated logs to ship, written a minute ago (settled), to the local tus server.
        for index in 1...2 {
            let file = directory + "/app-\(index).log.gz"
            try content(size: 256 << 10, seed: file).write(to: URL(fileURLWithPath: file))
            try fileManager.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -60)], ofItemAtPath: file)
        }
        if let tusPort {
            text = text.replacingOccurrences(of: entry.urlTemplate, with: "http://127.0.0.1:\(tusPort)/files/")
        }
        if case .moveTo(let target) = entry.after {
            try fileManager.createDirectory(atPath: root + target, withIntermediateDirectories: true)
        }
    }
    try text.write(toFile: demo + "/manifests.d/" + name, atomically: true, encoding: .utf8)
    print("\(name): \(manifest.downloads.count) download(s), \(manifest.uploads.count) upload(s)")
}
try fileManager.createDirectory(atPath: root, withIntermediateDirectories: true)
try """
# The demo agent's config (written by barge-demo).
manifests: \(demo)/manifests.d
state-dir: \(demo)/state
control-socket: \(demo)/barge.sock
allowed-roots: [\(root)]
allowed-schemes: [https, http]
concurrency: {total: 4, per-host: 4}

""".write(toFile: demo + "/barge.yaml", atomically: true, encoding: .utf8)
