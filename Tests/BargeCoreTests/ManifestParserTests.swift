import Testing

@testable import BargeCore

/// File facts from a table, for parser tests that must not touch the disk.
struct TableFileFacts: FileFacts {
    var table: [String: FileStatus] = [:]
    func status(ofPath path: String) -> FileStatus? { self.table[path] }
}

func parse(
    _ text: String,
    config: AgentConfig = .defaults(scope: .system),
    facts: any FileFacts = NoFileFacts()
)
    -> ParsedManifest
{
    ManifestParser(config: config, facts: facts).parse(text: text, path: "m.yaml", id: "m")
}

@Suite("ManifestParser")
struct ManifestParserTests {
    @Test func defaultsAreInheritedAndOverridden() throws {
        let parsed = parse(
            """
            version: 1
            defaults:
              priority: low
              network: any
              window: "22:00-06:00"
              retry: {min-delay: 5m}
              headers: {X-Fleet: edge, X-Tier: a}
            download:
              - url: https://example.com/a
                dest: /srv/a
              - url: https://example.com/b
                dest: /srv/b
                priority: high
                retry: {give-up-after: 3d}
                headers: {x-tier: b}
            """
        )
        let manifest = try #require(parsed.manifest, "\(parsed.diagnostics)")
        let (first, second) = (manifest.downloads[0].policy, manifest.downloads[1].policy)
        #expect(first.priority == .low)
        #expect(first.network == .any)
        #expect(first.windows.map(\.description) == ["22:00-06:00"])
        #expect(first.retry == RetryPolicy(minDelay: .minutes(5), giveUpAfter: .days(14)))
        #expect(second.priority == .high)
        #expect(second.network == .any)
        #expect(second.retry == RetryPolicy(minDelay: .minutes(5), giveUpAfter: .days(3)))
        #expect(second.headers == [HTTPHeader(name: "X-Fleet", value: "edge"), HTTPHeader(name: "x-tier", value: "b")])
    }

    @Test func pruneIsABoolean() throws {
        let entry = "download:\n  - url: https://example.com/a\n    dest: /srv/a\n"
        #expect(try #require(parse("version: 1\nprune: true\n" + entry).manifest).prune)
        #expect(try #require(parse("version: 1\n" + entry).manifest).prune == false)
        let wrong = parse("version: 1\nprune: yes\n" + entry)
        #expect(wrong.manifest == nil)
        #expect(
            wrong.diagnostics.map(\.description) == ["m.yaml:2:8: error: 'prune' must be true or false, found 'yes'"]
        )
    }

    @Test func builtInDefaults() throws {
        let manifest = try #require(parse("version: 1\ndownload: [{url: 'https://e.com/a', dest: /srv/a}]\n").manifest)
        let policy = manifest.downloads[0].policy
        #expect(policy == TransferPolicy())
        #expect(policy.priority == .normal)
        #expect(policy.network == .unmetered)
        #expect(policy.refresh == .every(.hours(24)))
        #expect(policy.maxRate == .off)
        #expect(policy.mode == 0o644)
    }

    @Test func mirrorsSizeHashAndUploads() throws {
        let parsed = parse(
            """
            version: 1
            download:
              - mirrors: [https://a.example.com/x, http://b.example.com/x]
                dest: /srv//x
                size: 4GiB
                sha256: 3A7BD3E2360A3D29EEA436FCFB7E44C735D117C42D1C1835420B6B9942DD4F1B
            upload:
              - src: /srv/logs/*.gz
                url: https://logs.example.com/{hostname}/{name}
                protocol: tus
                after: {move-to: /srv/logs/shipped}
            """
        )
        let manifest = try #require(parsed.manifest, "\(parsed.diagnostics)")
        let download = manifest.downloads[0]
        #expect(download.urls == ["https://a.example.com/x", "http://b.example.com/x"])
        #expect(download.destination == "/srv/x")
        #expect(download.size == ByteCount(4 << 30))
        #expect(download.sha256 == "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b")
        #expect(download.location == SourceLocation(file: "m.yaml", line: 4, column: 11))
        let upload = manifest.uploads[0]
        #expect(upload.uploadProtocol == .tus)
        #expect(upload.after == .moveTo("/srv/logs/shipped"))
        #expect(manifest.declaredSize.total == ByteCount(4 << 30))
    }

    @Test func uploadSettleReplyAndChunkSize() throws {
        let parsed = parse(
            """
            version: 1
            upload:
              - src: /srv/logs/**/*.gz
                url: https://logs.example.com/files/
                protocol: tus
                settle: 2m
                reply: 64KiB
                chunk-size: 4MiB
              - src: /srv/reports/daily.csv
                url: https://r.example.com/{relpath}/{sha256}
            """
        )
        let manifest = try #require(parsed.manifest, "\(parsed.diagnostics)")
        #expect(manifest.uploads[0].settle == .minutes(2))
        #expect(manifest.uploads[0].replyLimit == ByteCount(64 << 10))
        #expect(manifest.uploads[0].chunkSize == ByteCount(4 << 20))
        #expect(manifest.uploads[1].settle == UploadEntry.defaultSettle)
        #expect(manifest.uploads[1].replyLimit == nil)
        #expect(manifest.uploads[1].chunkSize == UploadEntry.defaultChunkSize)
        #expect(manifest.uploads[1].needsSHA256)
        #expect(!manifest.uploads[0].needsSHA256)
        let bad = parse(
            """
            version: 1
            upload:
              - {src: /srv/a, url: 'https://e.com/a', settle: 2d, reply: 2MiB, chunk-size: 1KiB}
            """
        )
        #expect(
            bad.diagnostics.map(\.message) == [
                "'settle' must be at most 1d, found 2d",
                "'reply' keeps at most 1MiB, found 2MiB",
                "'chunk-size' must be at least 64KiB, found 1KiB",
            ]
        )
    }

    @Test func aMoveToDirectoryWhereTheGlobFindsFilesIsRefused() {
        func problems(_ source: String, _ moveTo: String) -> [String] {
            parse(
                """
                version: 1
                upload:
                  - {src: '\(source)', url: 'https://e.com/files/', after: {move-to: \(moveTo)}}
                """
            ).diagnostics.map(\.message)
        }
        #expect(problems("/srv/logs/*.gz", "/srv/logs/shipped").isEmpty)
        #expect(problems("/srv/logs/*.gz", "/srv/shipped").isEmpty)
        #expect(problems("/srv/logs/**/*.gz", "/srv/logs/shipped").count == 1)
        #expect(problems("/srv/logs/*/a.gz", "/srv/logs/shipped").count == 1)
        #expect(problems("/srv/logs/*.gz", "/srv/logs").count == 1)
    }

    @Test func uploadURLTemplatesFillAndEncodeTheirPlaceholders() {
        var entry = UploadEntry(
            source: "/srv/logs/**/*.gz",
            urlTemplate: "https://e.com/in/{hostname}/{relpath}?n={name}&h={sha256}",
            location: SourceLocation(file: "m.yaml", line: 1, column: 1)
        )
        let url = entry.url(name: "a b#1.gz", relativePath: "x y/a b#1.gz", hostname: "edge-7", sha256: "ab12")
        #expect(url == "https://e.com/in/edge-7/x%20y/a%20b%231.gz?n=a%20b%231.gz&h=ab12")
        entry.urlTemplate = "https://e.com/{name}"
        #expect(
            entry.url(name: "ünï/x", relativePath: "", hostname: "h", sha256: nil) == "https://e.com/%C3%BCn%C3%AF%2Fx"
        )
    }

    @Test func reportsEveryProblemAtOnceInFileOrder() {
        let parsed = parse(
            """
            version: 1
            download:
              - url: https://example.com/a
                destt: /srv/a
              - url: https://example.com/b
                dest: /srv/b
                priority: urgent
            """
        )
        #expect(parsed.manifest == nil)
        #expect(parsed.diagnostics.map(\.location.line) == [3, 4, 7])
        #expect(parsed.diagnostics[1].message == "unknown key 'destt' in a download entry; did you mean 'dest'?")
    }

    @Test func destinationThatIsADirectoryUsesTheFacts() {
        let facts = TableFileFacts(table: ["/srv/data": FileStatus(kind: .directory, mode: 0o755, owner: 0)])
        let text = "version: 1\ndownload:\n  - {url: 'https://e.com/a', dest: /srv/data}\n"
        #expect(parse(text).isValid)
        let parsed = parse(text, facts: facts)
        #expect(
            parsed.diagnostics.map(\.description) == [
                "m.yaml:3:36: error: 'dest' names an existing directory '/srv/data'; name the file to write inside it"
            ]
        )
    }

    @Test func secretFilesMustExistAndBePrivate() {
        let text = "version: 1\ndownload:\n  - {url: 'https://e.com/a', dest: /srv/a, auth: {bearer-file: /s/t}}\n"
        #expect(parse(text).diagnostics.first?.message.contains("does not exist") == true)
        let open = TableFileFacts(table: ["/s/t": FileStatus(kind: .regular, mode: 0o644, owner: 0)])
        #expect(parse(text, facts: open).diagnostics.first?.message.contains("readable by others (mode 0644)") == true)
        let closed = TableFileFacts(table: ["/s/t": FileStatus(kind: .regular, mode: 0o600, owner: 0)])
        #expect(parse(text, facts: closed).manifest?.downloads[0].policy.credentials == .bearerFile("/s/t"))
    }

    @Test func schemesFollowTheConfig() {
        var config = AgentConfig.defaults(scope: .system)
        let text = "version: 1\ndownload:\n  - {url: 'file:///mnt/share/a', dest: /srv/a}\n"
        #expect(
            parse(text, config: config).diagnostics.first?.message.contains("not allowed by the agent config") == true
        )
        config.allowedSchemes.append("file")
        #expect(parse(text, config: config).isValid)
    }

    @Test func destinationsInsideBargesOwnDirectoriesAreRefused() {
        let text = "version: 1\ndownload:\n  - {url: 'https://e.com/a', dest: /var/lib/barge/state.sqlite}\n"
        #expect(parse(text).diagnostics.first?.message.contains("barge's own state directory") == true)
    }

    @Test func hooksAreArgvLists() throws {
        let good = parse(
            "version: 1\nhooks: {on-complete: [/usr/bin/logger, done]}\ndownload: [{url: 'https://e.com/a', dest: /srv/a}]\n"
        )
        #expect(good.manifest?.hooks.onComplete == ["/usr/bin/logger", "done"])
        let shell = parse(
            "version: 1\nhooks: {on-error: 'logger failed'}\ndownload: [{url: 'https://e.com/a', dest: /srv/a}]\n"
        )
        #expect(shell.diagnostics.first?.message.contains("barge runs no shell") == true)
    }
}

@Suite("ManifestSet")
struct ManifestSetTests {
    @Test func theFirstManifestOwnsADestination() {
        let config = AgentConfig.defaults(scope: .system)
        let parser = ManifestParser(config: config)
        let text = "version: 1\ndownload:\n  - {url: 'https://e.com/a', dest: /srv/a}\n"
        let first = parser.parse(text: text, path: "d/10-a.yaml", id: "10-a")
        let second = parser.parse(text: text, path: "d/20-b.yaml", id: "20-b")
        let result = ManifestSet.validate([first, second])
        #expect(result[0].isValid)
        #expect(!result[1].isValid)
        #expect(
            result[1].diagnostics.map(\.description) == [
                "d/20-b.yaml:3:36: error: destination '/srv/a' is already claimed by d/10-a.yaml:3:36; "
                    + "the first manifest in file-name order owns it"
            ]
        )
    }

    @Test func idsAreUnique() {
        let parser = ManifestParser(config: .defaults(scope: .system))
        let a = parser.parse(
            text: "version: 1\ndownload: [{url: 'https://e.com/a', dest: /srv/a}]",
            path: "a.yaml",
            id: "a"
        )
        let b = parser.parse(
            text: "version: 1\ndownload: [{url: 'https://e.com/b', dest: /srv/b}]",
            path: "a.yml",
            id: "a"
        )
        #expect(ManifestSet.validate([a, b])[1].diagnostics.first?.message.contains("already used by a.yaml") == true)
    }

    /// A repeated key is reported where it stands again, with lines counted as YAML counts them: CR LF (a file
    /// written on Windows) and a lone CR each end one line.
    @Test(arguments: ["\n", "\r\n", "\r"])
    func aRepeatedKeyIsPlacedWhateverEndsTheLines(lineEnd: String) {
        let text =
            ["version: 1", "prune: true", "download:", "  - url: https://example.com/a", "    dest: /srv/a"]
            .joined(separator: lineEnd) + lineEnd + "prune: false" + lineEnd
        let error = parse(text).diagnostics.first { $0.severity == .error }
        #expect(error?.location.line == 6 && error?.location.column == 1, "\(String(describing: error))")
        #expect(error?.message.contains("first at line 2, column 1") == true, "\(String(describing: error))")
    }

    @Test func yamlLinesEndAtEveryYAMLBreak() {
        #expect(YAMLLines.split("ab\r\ncd\ref\u{85}g\u{2028}h\u{2029}ij\n") == ["ab", "cd", "ef", "g", "h", "ij", ""])
        #expect(YAMLLines.split("") == [""])
        #expect(YAMLLines.split("\r\n\r\n") == ["", "", ""])
    }
}
