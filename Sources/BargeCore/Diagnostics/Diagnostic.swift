/// One problem found in a manifest or the agent config, with the position of the node at fault.
///
/// Printed as `FILE:LINE:COLUMN: error: MESSAGE`, the form compilers use.
public struct Diagnostic: Hashable, Sendable, CustomStringConvertible {
    /// How serious a problem is.
    public enum Severity: String, Hashable, Sendable, Codable {
        /// The file is invalid and is not used.
        case error
        /// The file is used, but something in it is probably not what its author meant.
        case warning
    }

    /// Where the problem is.
    public var location: SourceLocation
    /// Error or warning.
    public var severity: Severity
    /// What is wrong and, where it can be said, what would be valid.
    public var message: String

    /// Creates a diagnostic.
    public init(_ severity: Severity, at location: SourceLocation, _ message: String) {
        self.location = location
        self.severity = severity
        self.message = message
    }

    /// An error at `location`.
    public static func error(at location: SourceLocation, _ message: String) -> Diagnostic {
        Diagnostic(.error, at: location, message)
    }

    /// A warning at `location`.
    public static func warning(at location: SourceLocation, _ message: String) -> Diagnostic {
        Diagnostic(.warning, at: location, message)
    }

    /// `FILE:LINE:COLUMN: error: MESSAGE`.
    public var description: String { "\(self.location): \(self.severity.rawValue): \(self.message)" }
}

extension Array where Element == Diagnostic {
    /// Whether any of the diagnostics is an error.
    public var containsError: Bool { self.contains { $0.severity == .error } }
}
