import BargeCore
import BargeTestSupport
import BargeTransfer
import Foundation
import Testing

/// Runs a transfer to its end and returns what happened.
func fetch(
    _ request: TransferRequest,
    engine: TransferEngine = TransferEngine()
) async -> (
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

func sha256Hex(_ bytes: [UInt8]) -> String { TestContent.sha256(bytes) }

/// The names in a directory (dotfiles included).
func listing(_ directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}
