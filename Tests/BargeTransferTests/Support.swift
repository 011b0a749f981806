import BargeCore
import BargeTestSupport
import BargeTransfer
import Crypto
import Foundation
import Testing

/// Runs a transfer to its end and returns what happened.
func fetch(_ request: TransferRequest, engine: TransferEngine = TransferEngine()) async -> (
    outcome: TransferOutcome, events: [TransferEvent]
) {
    let handle = engine.start(request)
    var events: [TransferEvent] = []
    for await event in handle.events { events.append(event) }
    guard case .finished(let outcome) = events.last else { return (.cancelled, events) }
    return (outcome, events)
}

extension TransferOutcome {
    var completed: CompletedTransfer? {
        if case .completed(let done) = self { return done }
        return nil
    }

    var failure: TransferFailure? {
        if case .failed(let failure) = self { return failure }
        return nil
    }
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// The names in a directory (dotfiles included).
func listing(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

/// Waits (polling, with a deadline) until `condition` holds.
func eventually(timeout: Double = 10, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}
