// swift-tools-version: 6.1
// Barge: a background transfer agent for Linux.
import PackageDescription

/// Settings shared by every Swift target: Swift 6 mode is the package default; these upcoming features keep
/// imports explicit and existentials visible.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "barge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "barge", targets: ["barge"]),
        .library(name: "BargeCore", targets: ["BargeCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // Tests only: SwiftNIO's server side of the IETF resumable-uploads draft, a server to test against.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        // Manifest and agent-config model, units, validation. Parsing only: no file-system or network I/O.
        .target(
            name: "BargeCore",
            dependencies: [.product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings
        ),
        // libcurl, with typed wrappers for its variadic functions.
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // libnl-3 and libnl-route-3: the netlink cache manager (links, addresses, routes).
        .systemLibrary(
            name: "CNetlink",
            pkgConfig: "libnl-route-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]
        ),
        // libsystemd's D-Bus client (sd-bus), for NetworkManager's and ModemManager's verdicts.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        // The network monitor: uplinks from netlink events, their facts from sysfs, their cost (BargeCore's
        // classifier).
        .target(
            name: "BargeNetwork",
            dependencies: ["BargeCore", "CNetlink", "CBargeLinux", "CSystemd"],
            swiftSettings: swiftSettings
        ),
        // Linux calls Swift's Glibc module leaves out (extended attributes, later SO_PEERCRED).
        .target(name: "CBargeLinux"),
        // The transfer engine: libcurl's multi interface on one thread, partial files, verification, commit.
        .target(
            name: "BargeTransfer",
            dependencies: [
                "BargeCore", "CCurl", "CBargeLinux", .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // The parsers' properties for any input: libFuzzer's entry when built by scripts/fuzz.sh (BARGE_FUZZ), else
        // a runner that replays a corpus (the test suite's).
        .executableTarget(
            name: "barge-fuzz",
            dependencies: ["BargeCore", "CBargeLinux"],
            swiftSettings: swiftSettings
        ),
        // Reads the config file and the drop-in directory from disk and supplies the file-system facts
        // (directories, secret files, manifest ownership) that BargeCore's validation asks for.
        .target(
            name: "BargeLoader",
            dependencies: ["BargeCore"],
            swiftSettings: swiftSettings
        ),
        // The agent's persistent state: jobs, offsets, validators, history (SQLite through GRDB, WAL).
        .target(
            name: "BargeStore",
            dependencies: ["BargeCore", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        // The agent: the supervisor (reconciler + engine + store), the drop-in watcher, the control socket.
        .target(
            name: "BargeAgent",
            dependencies: [
                "BargeNetwork",
                "BargeCore", "BargeLoader", "BargeTransfer", "BargeStore", "CBargeLinux",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // The command-line tool; thin.
        .executableTarget(
            name: "barge",
            dependencies: [
                "BargeCore",
                "BargeLoader",
                "BargeTransfer",
                "BargeAgent",
                "BargeNetwork",
                "CCurl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Benchmarks (run by scripts/bench/*.sh), never by the test suite.
        .executableTarget(
            name: "barge-bench",
            dependencies: ["BargeCore", "BargeLoader", "BargeTransfer", "BargeStore", "CBargeLinux"],
            swiftSettings: swiftSettings
        ),
        // Prepares the README's main job: the examples rewritten to mirror from a local origin (scripts/run.sh).
        .executableTarget(
            name: "barge-demo",
            dependencies: ["BargeCore", "BargeLoader", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BargeCoreTests",
            dependencies: [
                "BargeCore",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BargeStoreTests",
            dependencies: [
                "BargeCore", "BargeStore", "BargeTestSupport", .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BargeLoaderTests",
            dependencies: ["BargeCore", "BargeLoader"],
            exclude: ["Fixtures"],
            swiftSettings: swiftSettings
        ),
        // Test support: real servers started by the tests (nginx, a fault-injecting origin), scratch directories.
        .target(
            name: "BargeTestSupport",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOResumableUpload", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                "CBargeLinux",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "BargeTransferTests",
            dependencies: ["BargeCore", "BargeTransfer", "BargeTestSupport", "CBargeLinux"],
            swiftSettings: swiftSettings
        ),
        // The agent's parts without I/O: the inbox, the coalescing, the pure steps of the supervisor.
        .testTarget(
            name: "BargeAgentTests",
            dependencies: [
                "BargeAgent", "BargeCore", "BargeNetwork", "BargeStore", "BargeTransfer",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // End-to-end tests: run the built `barge` binary.
        .testTarget(
            name: "BargeCLITests",
            dependencies: ["barge", "barge-fuzz", "BargeCore", "BargeTestSupport"],
            swiftSettings: swiftSettings
        ),
    ],
    swiftLanguageModes: [.v6]
)
