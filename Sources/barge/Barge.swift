import ArgumentParser
import Foundation

/// The `barge` command: a background transfer agent for Linux.
@main
struct Barge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "barge",
        abstract: "Keep files mirrored in the background without spending precious network.",
        discussion: """
            Manifests in a drop-in directory declare what to mirror and the policy of each file.
            See docs/ in the source tree, or https://… once packaged.
            """,
        version: "0.1.0",
        subcommands: [
            AgentCommand.self, Status.self, Watch.self, Get.self, Suspend.self, Resume.self, Cancel.self, Retry.self,
            Reload.self, Check.self, Net.self,
        ]
    )

    /// Runs the command line, mapping usage errors to exit status 2 (the convention `barge check` documents:
    /// 0 valid, 1 invalid, 2 usage).
    static func main() async {
        do {
            var command = try Self.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = Self.exitCode(for: error)
            if code == .validationFailure {
                let message = Self.fullMessage(for: error)
                FileHandle.standardError.write(Data((message + "\n").utf8))
                Foundation.exit(2)
            }
            Self.exit(withError: error)
        }
    }
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The agent config file.",
            discussion: "Default: /etc/barge/barge.yaml for root, $XDG_CONFIG_HOME/barge/barge.yaml otherwise; "
                + "a missing default file means built-in defaults.",
            valueName: "file"
        )
    )
    var config: String?
}
