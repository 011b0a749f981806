internal import CBargeLinux
import Foundation

/// The target this process fuzzes: `BARGE_FUZZ_TARGET` (manifest, config or units), read once.
let selectedTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["BARGE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        FileHandle.standardError.write(Data("barge-fuzz: set BARGE_FUZZ_TARGET to one of \(names)\n".utf8))
        exit(2)
    }
    return target
}()

#if BARGE_FUZZ
/// libFuzzer's driver, given the arguments (corpus directories, `-max_total_time=…`) and one input at a time.
@main
struct FuzzWithLibFuzzer {
    static func main() {
        var count = CommandLine.argc
        var arguments: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(
            LLVMFuzzerRunDriver(&count, &arguments) { start, size in
                guard let start else { return 0 }
                if let broken = selectedTarget.check(UnsafeRawBufferPointer(start: start, count: size)) {
                    fatalError("\(selectedTarget.rawValue): \(broken)")
                }
                return 0
            }
        )
    }
}
#else
/// Without libFuzzer: runs the target on each file named (or each file in each directory named) and exits 1 at
/// the first whose properties do not hold, naming it.
@main
struct ReplayCorpus {
    static func main() {
        var inputs: [String] = []
        for argument in CommandLine.arguments.dropFirst() {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("barge-fuzz: \(argument): no such file\n".utf8))
                exit(2)
            }
            if isDirectory.boolValue {
                // A directory that cannot be listed fails the run: never read as an empty corpus.
                guard let names = try? FileManager.default.contentsOfDirectory(atPath: argument) else {
                    FileHandle.standardError.write(Data("barge-fuzz: \(argument): cannot be listed\n".utf8))
                    exit(2)
                }
                inputs += names.sorted().map { argument + "/" + $0 }
            } else {
                inputs.append(argument)
            }
        }
        for input in inputs {
            guard let data = FileManager.default.contents(atPath: input) else {
                FileHandle.standardError.write(Data("barge-fuzz: \(input): unreadable\n".utf8))
                exit(2)
            }
            let broken = data.withUnsafeBytes { selectedTarget.check($0) }
            if let broken {
                FileHandle.standardError.write(Data("barge-fuzz: \(input): \(broken)\n".utf8))
                exit(1)
            }
        }
        print("barge-fuzz: \(selectedTarget.rawValue): \(inputs.count) inputs hold")
    }
}
#endif
