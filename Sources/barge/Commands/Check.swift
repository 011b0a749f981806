import ArgumentParser
import BargeCore
import BargeLoader
import Foundation

/// `barge check [PATH…]`: validates manifests and prints every problem with its position.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate manifests (files or drop-in directories).",
        discussion: """
            Prints each problem as FILE:LINE:COLUMN: error: MESSAGE, then one line per manifest.
            Exit status: 0 when every manifest is valid, 1 when any is invalid, 2 on usage errors.
            """
    )

    @OptionGroup var options: GlobalOptions

    @Flag(name: .long, help: "Print the result as JSON.")
    var json = false

    @Argument(help: "Manifest files or directories (default: the configured manifest directory).")
    var paths: [String] = []

    func run() throws {
        let parsedConfig: ParsedAgentConfig
        do {
            parsedConfig = try ConfigLoader.load(path: self.options.config)
        } catch {
            throw ValidationError("cannot read the config \(error)")
        }
        let config = parsedConfig.config
        let paths = self.paths.isEmpty ? [config.manifestDirectory] : self.paths
        let manifests: [ParsedManifest]
        do {
            manifests = try ManifestLoader(config: config).load(paths: paths)
        } catch {
            throw ValidationError("\(error)")
        }
        let report = CheckReport(config: parsedConfig, manifests: manifests)
        print(self.json ? report.json() : report.text(), terminator: "")
        if !report.isValid { throw ExitCode(1) }
    }
}
