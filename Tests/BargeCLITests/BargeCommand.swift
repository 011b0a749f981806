import Foundation
import Testing

/// Runs the built `barge` binary, as a user would.
struct BargeCommand {
    /// The package's root directory.
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The `barge` executable beside the test bundle (SwiftPM builds it because this target depends on it).
    static var executable: String {
        if let override = ProcessInfo.processInfo.environment["BARGE_BINARY"] { return override }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The runner may be inside `X.xctest/…`; walk up to the products directory.
        while directory.path != "/" {
            let candidate = directory.appendingPathComponent("barge").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return packageRoot + "/.build/debug/barge"
    }

    /// What one run printed and how it ended.
    struct Result {
        var status: Int32
        var standardOutput: String
        var standardError: String
    }

    static func run(_ arguments: [String], in directory: String = packageRoot) throws -> Result {
        try self.run(executable: self.executable, arguments, in: directory)
    }

    /// Runs another program (`ss`, `tc` …) the same way, with `environment` added to this process's.
    static func run(
        executable: String,
        _ arguments: [String],
        in directory: String = packageRoot,
        environment: [String: String] = [:]
    ) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            standardOutput: String(decoding: outputData, as: UTF8.self),
            standardError: String(decoding: errorData, as: UTF8.self)
        )
    }
}
