import BargeCore
import Testing

@testable import BargeTransfer

@Suite("Transfer logic without I/O")
struct PureLogicTests {
    typealias Response = UploadExchange.Response

    func session(_ url: String) -> UploadSession { UploadSession(url: url, stamp: SourceStamp(size: 10, modified: 1)) }

    @Test func aSessionIsStoredWithItsFilesStamp() {
        let session = UploadSession(url: "http://h:1/files/a b", stamp: SourceStamp(size: 10, modified: -5, inode: 7))
        #expect(UploadSession(encoded: session.encoded) == session)
        #expect(UploadSession(encoded: "10 5 http://h/x") == nil)
        #expect(UploadSession(encoded: "") == nil)
    }

    func response(_ status: Int, offset: UInt64? = nil, length: UInt64? = nil, location: String? = nil) -> Response {
        Response(status: status, uploadOffset: offset, uploadLength: length, location: location)
    }

    @Test func tusCreatesThenSendsChunksFromTheServersOffset() {
        let base = "http://h:1/files/"
        var exchange = UploadExchange(request: UploadRequest(uploadProtocol: .tus, chunkSize: 4), size: 10)
        #expect(exchange.step == .discover)
        var options = self.response(204)
        options.tusVersion = "1.0.0"
        options.checksumAlgorithms = "md5, SHA1"
        #expect(exchange.apply(options, base: base) == .proceed)
        #expect(exchange.checksums)
        #expect(exchange.step == .create)
        #expect(exchange.apply(self.response(201, location: "/files/abc"), base: base) == .proceed)
        #expect(exchange.session == "http://h:1/files/abc")
        #expect(exchange.step == .send(offset: 0, count: 4))
        #expect(exchange.apply(self.response(204, offset: 4), base: base) == .proceed)
        #expect(exchange.step == .send(offset: 4, count: 4))
        // The server kept less than was sent (a dropped request): the next chunk starts at its offset.
        #expect(exchange.apply(self.response(204, offset: 6), base: base) == .proceed)
        #expect(exchange.step == .send(offset: 6, count: 4))
        #expect(exchange.apply(self.response(204, offset: 10), base: base) == .done)
        #expect(exchange.confirmed == 10)
    }

    @Test func tusResumesAKnownUploadAndStartsOverWhenTheServerLostIt() {
        let base = "http://h:1/files/abc"
        let request = UploadRequest(uploadProtocol: .tus, session: self.session(base), chunkSize: 100)
        var options = self.response(200)
        options.tusResumable = "1.0.0"
        var exchange = UploadExchange(request: request, size: 10)
        #expect(exchange.apply(options, base: base) == .proceed)
        #expect(!exchange.checksums)
        #expect(exchange.step == .query)
        #expect(exchange.apply(self.response(200, offset: 7, length: 10), base: base) == .proceed)
        #expect(exchange.step == .send(offset: 7, count: 3))
        // 409: the offset differs; ask again.
        #expect(exchange.apply(self.response(409), base: base) == .proceed)
        #expect(exchange.step == .query)
        // Gone, or another length: a new upload.
        #expect(exchange.apply(self.response(404), base: base) == .proceed)
        #expect(exchange.step == .create && exchange.session == nil && exchange.confirmed == 0)
        var other = UploadExchange(request: request, size: 10)
        _ = other.apply(options, base: base)
        #expect(other.apply(self.response(200, offset: 3, length: 99), base: base) == .proceed)
        #expect(other.step == .create)
        // A server that keeps losing it is not tried forever.
        #expect(other.apply(self.response(201, location: base), base: base) == .proceed)
        #expect(other.apply(self.response(410), base: base) == .proceed)
        #expect(other.apply(self.response(201, location: base), base: base) == .proceed)
        #expect(
            other.apply(self.response(410), base: base)
                == .failed(.transient, "the server keeps losing the upload (HTTP 410 for it)")
        )
        // Complete already: done without a byte.
        var whole = UploadExchange(request: request, size: 10)
        _ = whole.apply(options, base: base)
        #expect(whole.apply(self.response(200, offset: 10), base: base) == .done)
    }

    @Test func tusRefusesAServerWithoutTusAndChecksumMismatchesAreBounded() {
        let base = "http://h:1/files/"
        var exchange = UploadExchange(request: UploadRequest(uploadProtocol: .tus), size: 10)
        #expect(
            exchange.apply(self.response(200), base: base)
                == .failed(.permanent, "h:1 does not announce tus 1.0.0 (OPTIONS has no Tus-Version)")
        )
        var options = self.response(204)
        options.tusVersion = "1.0.0"
        var checked = UploadExchange(request: UploadRequest(uploadProtocol: .tus), size: 10)
        _ = checked.apply(options, base: base)
        #expect(
            checked.apply(self.response(201), base: base)
                == .failed(.permanent, "h:1 created an upload without a Location")
        )
        _ = checked.apply(self.response(201, location: "x"), base: base)
        #expect(checked.session == "http://h:1/files/x")
        #expect(checked.apply(self.response(460), base: base) == .proceed)
        #expect(checked.apply(self.response(460), base: base) == .proceed)
        #expect(
            checked.apply(self.response(460), base: base)
                == .failed(.transient, "h:1 keeps refusing the chunk's checksum")
        )
        #expect(checked.apply(self.response(500), base: base) == .unexpectedStatus)
    }

    @Test func tusSendsTheFirstChunkWithTheCreationWhereTheServerTakesItAndAsksOnce() {
        let base = "http://h:1/files/"
        var exchange = UploadExchange(request: UploadRequest(uploadProtocol: .tus, chunkSize: 4), size: 10)
        var options = self.response(204)
        options.tusVersion = "1.0.0"
        options.tusExtension = "creation,creation-with-upload,termination"
        #expect(exchange.apply(options, base: base) == .proceed)
        #expect(exchange.capabilities == UploadExchange.Capabilities(checksums: false, creationWithUpload: true))
        #expect(exchange.step == .create)
        #expect(exchange.body == (0, 4))
        #expect(exchange.apply(self.response(201, offset: 4, location: "/files/a"), base: base) == .proceed)
        #expect(exchange.step == .send(offset: 4, count: 4))
        // Known from an earlier file: no OPTIONS; a small file is one request.
        var small = UploadExchange(
            request: UploadRequest(uploadProtocol: .tus, chunkSize: 4),
            size: 3,
            known: exchange.capabilities
        )
        #expect(small.step == .create)
        #expect(small.body == (0, 3))
        #expect(small.apply(self.response(201, offset: 3, location: "/files/b"), base: base) == .done)
        // A known upload is asked where it stands, still without OPTIONS.
        let resumed = UploadExchange(
            request: UploadRequest(uploadProtocol: .tus, session: self.session("http://h:1/files/b")),
            size: 3,
            known: exchange.capabilities
        )
        #expect(resumed.step == .query)
    }

    @Test func aPutResumesWhereTheServerAnnouncedTheDraftAndFallsBackOnAnotherVersion() {
        let base = "http://h:1/up/a.bin"
        var exchange = UploadExchange(request: UploadRequest(uploadProtocol: .put), size: 10)
        exchange.announce("/resumable_upload/7", base: base)
        #expect(exchange.session == "http://h:1/resumable_upload/7")
        // The next run asks where the server stands and sends the rest in one PATCH.
        let session = exchange.session.map(self.session)
        var resumed = UploadExchange(request: UploadRequest(uploadProtocol: .put, session: session), size: 10)
        #expect(resumed.step == .query)
        #expect(resumed.apply(self.response(204, offset: 6), base: base) == .proceed)
        #expect(resumed.step == .send(offset: 6, count: 4))
        #expect(resumed.apply(self.response(201), base: base) == .done)
        // Gone at the server: the whole PUT again.
        var lost = UploadExchange(request: UploadRequest(uploadProtocol: .put, session: session), size: 10)
        #expect(lost.apply(self.response(404), base: base) == .proceed)
        #expect(lost.step == .put && lost.session == nil)
        // A server of another interop version: a plain PUT, once.
        var other = UploadExchange(request: UploadRequest(uploadProtocol: .put), size: 10)
        var refused = self.response(400)
        refused.draftInteropVersion = "7"
        #expect(other.apply(refused, base: base) == .proceed)
        #expect(other.plainPut && other.step == .put)
        #expect(other.apply(refused, base: base) == .unexpectedStatus)
    }

    @Test func putIsOneRequestOfTheWholeFile() {
        var exchange = UploadExchange(request: UploadRequest(uploadProtocol: .put), size: 10)
        #expect(exchange.step == .put)
        #expect(exchange.body == (0, 10))
        #expect(exchange.apply(self.response(201), base: "http://h/x") == .done)
        var refused = UploadExchange(request: UploadRequest(uploadProtocol: .put), size: 10)
        #expect(refused.apply(self.response(403), base: "http://h/x") == .unexpectedStatus)
    }

    @Test func locationsResolveAgainstTheRequest() {
        #expect(UploadExchange.resolve("https://o/x", against: "http://h:1/a/b") == "https://o/x")
        #expect(UploadExchange.resolve("/files/1", against: "http://h:1/a/b?q") == "http://h:1/files/1")
        #expect(UploadExchange.resolve("1", against: "http://h:1/a/b") == "http://h:1/a/1")
        #expect(UploadExchange.resolve("1", against: "http://h:1") == "http://h:1/1")
        #expect(Base64.encode(Array("app.log".utf8)) == "YXBwLmxvZw==")
        #expect(Base64.encode([0xff, 0xfe]) == "//4=")
    }

    @Test func retryScheduleBacksOffWithJitterAndHonoursRetryAfter() {
        let schedule = RetrySchedule(minimumDelay: TimeSpan(seconds: 30), maximumDelay: .minutes(10))
        #expect(schedule.delay(attempt: 1, jitter: 0) == 30)
        #expect(schedule.delay(attempt: 1, jitter: 1) == 45)
        #expect(schedule.delay(attempt: 3, jitter: 0) == 120)
        #expect(schedule.delay(attempt: 20, jitter: 0) == 600)
        #expect(schedule.delay(attempt: 1, retryAfter: TimeSpan(seconds: 300), jitter: 0) == 300)
        for attempt in 1...40 {
            let delay = schedule.delay(attempt: attempt, jitter: 0.5)
            #expect(delay >= 30 && delay <= 900)
        }
    }

    /// Files go to the commit queue at once when nothing else runs on the engine thread; otherwise when their
    /// batch is full or the first of them has waited `longestWait`.
    @Test func commitPacingBatchesWhileOthersRun() {
        let pacing = CommitPacing(batchSize: 128, longestWait: 0.025)
        #expect(pacing.decide(count: 1, since: 10, now: 10, othersRunning: false) == .now)
        #expect(pacing.decide(count: 1, since: 10, now: 10, othersRunning: true) == .at(10.025))
        #expect(pacing.decide(count: 127, since: 10, now: 10.02, othersRunning: true) == .at(10.025))
        #expect(pacing.decide(count: 128, since: 10, now: 10, othersRunning: true) == .now)
        #expect(pacing.decide(count: 3, since: 10, now: 10.025, othersRunning: true) == .now)
        #expect(pacing.decide(count: 3, since: 10, now: 11, othersRunning: true) == .now)
        // The files that may wait, and the batch, follow the limit on open files.
        #expect(pacing.waitingBound(descriptorLimit: 524_288, threads: 2) == 384)
        #expect(pacing.waitingBound(descriptorLimit: 1024, threads: 2) == 256)
        #expect(pacing.waitingBound(descriptorLimit: 1024, threads: 8) == 64)
        #expect(pacing.waitingBound(descriptorLimit: 64, threads: 4) == 16)
        #expect(pacing.fitted(toWaiting: 384).batchSize == 128)
        #expect(pacing.fitted(toWaiting: 64).batchSize == 21)
        #expect(pacing.fitted(toWaiting: 2).batchSize == 1)
    }

    /// Normal and low are background: they yield and are marked Lower-Effort; foreground and high are not; the
    /// config turns each off.
    @Test func backgroundPrioritiesYieldAndAreMarkedLowerEffort() {
        var config = AgentConfig.defaults(scope: .system)
        func request(_ priority: Priority) -> TransferRequest {
            var policy = TransferPolicy()
            policy.priority = priority
            return TransferRequest(
                spec: JobSpec(manifest: "m", urls: ["https://o.test/f"], destination: "/srv/f", policy: policy),
                config: config
            )
        }
        #expect([Priority.foreground, .high, .normal, .low].map { request($0).yields } == [false, false, true, true])
        #expect(
            [Priority.foreground, .high, .normal, .low].map { request($0).lowerEffort } == [false, false, true, true]
        )
        config.yield.enabled = false
        config.yield.lowerEffort = false
        #expect(!request(.low).yields && !request(.low).lowerEffort)
    }

    @Test func tokenBucketKeepsTheLongRunRate() {
        var bucket = TokenBucket(bytesPerSecond: 1_000_000, now: 0)
        var now = 0.0
        var admitted = 0
        // Offer 64 KiB chunks as fast as the bucket allows for 10 simulated seconds.
        while now < 10 {
            if let wait = bucket.admit(65_536, now: now) {
                now += wait
            } else {
                admitted += 65_536
            }
        }
        let rate = Double(admitted) / 10
        #expect(rate > 950_000 && rate < 1_050_000, "\(rate)")
        bucket.setRate(bytesPerSecond: 100_000, now: now)
        var slow = 0
        let start = now
        while now < start + 10 {
            if let wait = bucket.admit(16_384, now: now) { now += wait } else { slow += 16_384 }
        }
        #expect(Double(slow) / 10 < 105_000 && Double(slow) / 10 > 95_000)
    }

    @Test func contentRanges() {
        #expect(ContentRange("bytes 100-199/1000") == ContentRange(start: 100, end: 199, total: 1000))
        #expect(ContentRange("bytes */1000")?.total == 1000)
        #expect(ContentRange("bytes */1000")?.start == nil)
        #expect(ContentRange("items 1-2/3") == nil)
        #expect(ContentRange(nil) == nil)
    }

    @Test func onlyTheHeadersTheEngineActsOnAreKept() {
        func field(_ name: String) -> ResponseHeaders.Field? {
            Array(name.utf8).withUnsafeBytes { ResponseHeaders.Field(name: $0) }
        }
        #expect(field("ETag") == .etag)
        #expect(field("content-RANGE") == .contentRange)
        #expect(field("Last-Modified") == .lastModified)
        #expect(field("Retry-After") == .retryAfter)
        #expect(field("Server") == nil)
        #expect(field("Content-Rang") == nil)
        #expect(field("Content-Ranges") == nil)
        #expect(field("") == nil)
        for field in ResponseHeaders.Field.allCases {
            var headers = ResponseHeaders()
            headers[field] = "value of \(field)"
            for other in ResponseHeaders.Field.allCases {
                #expect(headers[other] == (other == field ? "value of \(field)" : nil))
            }
        }
    }

    @Test func statusesAreClassified() {
        let url = "https://origin.example:8443/file"
        #expect(FailureClassifier.failure(status: 404, url: url, retryAfter: nil).kind == .permanent)
        #expect(FailureClassifier.failure(status: 410, url: url, retryAfter: nil).kind == .permanent)
        #expect(
            FailureClassifier.failure(status: 403, url: url, retryAfter: nil).reason
                == "origin.example:8443 denied access to \(url) (HTTP 403 Forbidden)"
        )
        #expect(
            FailureClassifier.failure(status: 502, url: url, retryAfter: 5)
                == TransferFailure(
                    .transient,
                    "origin.example:8443 answered with a server error (HTTP 502)",
                    retryAfter: 5
                )
        )
        #expect(FailureClassifier.failure(status: 418, url: url, retryAfter: nil).kind == .permanent)
    }

    @Test func retryAfterParsesSecondsAndDates() {
        #expect(FailureClassifier.retryAfter("120", now: 0) == 120)
        #expect(FailureClassifier.retryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now: 784_111_700) == 77)
        #expect(FailureClassifier.retryAfter("soon", now: 0) == nil)
        #expect(FailureClassifier.retryAfter(nil, now: 0) == nil)
    }

    @Test func validatorsForIfRange() {
        #expect(Validators(etag: "\"abc\"", lastModified: "d").ifRange == "\"abc\"")
        #expect(Validators(etag: "W/\"abc\"", lastModified: "d").ifRange == "d")
        #expect(Validators(etag: "W/\"abc\"").ifRange == nil)
    }
}

extension ContentRange {
    init(start: UInt64?, end: UInt64?, total: UInt64?) {
        self.init("bytes */0")!
        self.start = start
        self.end = end
        self.total = total
    }
}
