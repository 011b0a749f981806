public import BargeCore
import Foundation
import Glibc

/// Finds and reads the agent config file.
public enum ConfigLoader {
    /// The scope of an agent run by the current user: system for root, user otherwise.
    public static var currentScope: AgentConfig.Scope { geteuid() == 0 ? .system : .user }

    /// The current user's XDG directories.
    public static var currentEnvironment: UserEnvironment {
        UserEnvironment(variables: ProcessInfo.processInfo.environment)
    }

    /// A config file named on the command line that cannot be read.
    public struct ReadError: Error, Sendable, CustomStringConvertible {
        /// The path.
        public var path: String
        /// What is wrong.
        public var reason: String
        public var description: String { "\(self.path): \(self.reason)" }
    }

    /// Loads the config at `path`, or the default file for the current scope when `path` is nil.
    ///
    /// A missing default file means the built-in defaults; a missing file that was named explicitly is an error.
    ///
    /// - Throws: ``ReadError`` when an explicitly named file cannot be read.
    public static func load(path explicitPath: String?) throws(ReadError) -> ParsedAgentConfig {
        let scope = Self.currentScope
        let environment = Self.currentEnvironment
        let defaults = AgentConfig.defaults(scope: scope, environment: environment)
        let path = explicitPath ?? AgentConfig.defaultPath(scope: scope, environment: environment)
        let absolutePath = PathRules.resolve(path, against: FileManager.default.currentDirectoryPath)
        guard let data = FileManager.default.contents(atPath: absolutePath) else {
            if explicitPath == nil && !FileManager.default.fileExists(atPath: absolutePath) {
                return ParsedAgentConfig(config: defaults, diagnostics: [])
            }
            let reason = FileManager.default.fileExists(atPath: absolutePath) ? "cannot read the file" : "no such file"
            throw ReadError(path: path, reason: reason)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ReadError(path: path, reason: "not UTF-8 text")
        }
        var parsed = AgentConfigParser(defaults: defaults).parse(text: text, path: absolutePath)
        // Report positions under the name the user gave.
        if absolutePath != path {
            parsed.diagnostics = parsed.diagnostics.map { diagnostic in
                var diagnostic = diagnostic
                diagnostic.location.file = path
                return diagnostic
            }
        }
        return parsed
    }
}
