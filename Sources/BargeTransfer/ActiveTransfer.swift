import BargeCore
import CBargeLinux
internal import CCurl
import Glibc
import Synchronization

/// Seconds on the monotonic clock.
func monotonicNow() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// One transfer's state while the engine runs it: its curl easy handle, its partial file, the current attempt's
/// response, and its pacing.
///
/// Made on the thread that starts it (``EngineLoop/makeTransfer(_:_:_:traffic:)``), then confined to its engine thread:
/// every method is called there (libcurl's callbacks included), and the engine gives its easy handle back to the
/// pool when it finishes, so that the last release, wherever it happens, touches nothing of the engine's.
final class ActiveTransfer {
    /// What the body of the current response is used for.
    enum BodyMode {
        /// Headers not yet complete.
        case undetermined
        /// Content: append to the partial.
        case write
        /// An error page or a 304/416: not content.
        case discard
    }

    let id: TransferID
    let request: TransferRequest
    let continuation: EventSink
    /// The curl easy handle, taken from the engine's pool when the transfer is admitted (a transfer still
    /// waiting for a slot holds none) and given back once its bytes are all in or it ends.
    var easy: UnsafeMutableRawPointer {
        if let handle = self.easyHandle { return handle }
        let handle = self.easyHandles.take()
        self.easyHandle = handle
        return handle
    }
    private var easyHandle: UnsafeMutableRawPointer?

    /// Gives the easy handle back to the pool: the transfer is done with the network (its file waits for the
    /// commit queue), and a later attempt takes a handle again.
    func releaseEasyHandle() {
        guard let handle = self.easyHandle else { return }
        self.easyHandle = nil
        self.easyHandles.give(handle)
    }
    private let easyHandles: EasyHandlePool
    /// The engine-wide budget shared by all transfers.
    let globalPacer: GlobalPacer
    /// Its interface's share of the engine (when it is bound to one): Barge's bytes on it, and the yield budget.
    let traffic: InterfaceTraffic?
    /// Its engine thread's sockets.
    let sockets: SocketLedger
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
    private var headerList: UnsafeMutablePointer<curl_slist>?

    // The source and the partial.
    var sourceIndex = 0
    var partial: PartialFile?
    /// Where the first attempt resumes, found when the partial was opened off the engine thread.
    var preparedOffset: UInt64?
    /// Admitted, its partial being opened by the prepare queue.
    var isPreparing = false
    /// Until its first start: whether the destination may be this transfer's file, placed by an earlier run.
    var mayFindItPlaced = true
    var failures: [TransferFailure] = []

    // The current attempt.
    var attemptOffset: UInt64 = 0
    var isHTTP = true
    var responseHeaders = ResponseHeaders()
    var status = 0
    var httpVersion = ""
    var bodyMode = BodyMode.undetermined
    /// Set when the engine itself ends an attempt (a write error, a stall, a bad range); wins over curl's code.
    var abortFailure: TransferFailure?
    /// Set when the attempt must start over from byte 0 on the same source.
    var restartFromZero = false
    /// Ask for (and decode) compressed content: set after a server compressed a body we asked identity for.
    var decodeContent = false
    var restarts = 0
    var transferred: UInt64 = 0
    var sinceCheckpoint: UInt64 = 0
    var inMulti = false
    /// Received and handed to the write queue, then the commit queue, which alone touch its partial until their
    /// results come back: it completes or fails there, and cancelling it has no effect.
    var isCommitting = false

    // Pacing, pausing and liveness.
    var bucket: TokenBucket?
    var pacedUntil: Double?
    var userPaused = false
    var lastByteAt = monotonicNow()
    var lastProgressAt = 0.0
    var lastProgressBytes: UInt64 = 0
    var bytesPerSecond = 0.0

    /// Tells the engine that a background checkpoint holds (from the disk queue).
    let checkpointed: @Sendable (TransferID, PartialFile, Int, UInt64) -> Void

    init(
        id: TransferID,
        request: TransferRequest,
        continuation: EventSink,
        globalPacer: GlobalPacer,
        traffic: InterfaceTraffic?,
        sockets: SocketLedger,
        easyHandles: EasyHandlePool,
        checkpointed: @escaping @Sendable (TransferID, PartialFile, Int, UInt64) -> Void
    ) {
        self.checkpointed = checkpointed
        self.id = id
        self.globalPacer = globalPacer
        self.traffic = traffic
        self.sockets = sockets
        self.request = request
        self.continuation = continuation
        self.easyHandles = easyHandles
        self.errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        self.bucket = TokenBucket.adjusted(nil, to: request.maxRate, now: monotonicNow())
    }

    deinit {
        if let handle = self.easyHandle { self.easyHandles.give(handle) }
        curl_slist_free_all(self.headerList)
        self.errorBuffer.deallocate()
    }

    /// `BARGE_CURL_VERBOSE=1` makes libcurl trace every exchange on standard error (never in production logs:
    /// the trace would show request headers).
    static let verbose = getenv("BARGE_CURL_VERBOSE").map { String(cString: $0) == "1" } ?? false

    var currentSource: String { self.request.sources[self.sourceIndex] }
    /// The host the transfer was admitted for (its first source's): its connection counts against that host.
    lazy var admissionHost: String = URLRules.host(of: self.request.sources.first ?? "")
    /// Whether it counts against its host's connections now (admitted, and not yet handed to be committed).
    var holdsConnection = false
    /// Where the current source redirected to (the engine follows redirects itself, ``RedirectPolicy``).
    var redirectedURL: String?
    /// Redirects followed from the current source.
    var redirects = 0
    /// The URL the current attempt asks for.
    var attemptURL: String { self.redirectedURL ?? self.currentSource }
    /// Whether the current attempt goes to the origin the entry names (its headers and credentials go only there).
    var attemptIsAtSourceOrigin: Bool {
        self.redirectedURL.map { RedirectPolicy.sameOrigin($0, self.currentSource) } ?? true
    }
    var received: UInt64 { self.upload?.received ?? self.partial?.length ?? 0 }
    /// An upload's local file and exchange with the server; nil for a download.
    var upload: UploadState?
    var errorDetail: String { String(cString: self.errorBuffer) }

    // MARK: Setting up an attempt

    /// Configures the easy handle for an attempt on the current source, resuming from the partial.
    ///
    /// - Throws: ``TransferFailure`` when the partial cannot be opened or an option is refused.
    func configureAttempt(firstAttempt: Bool) throws(TransferFailure) {
        let url = self.attemptURL
        let scheme = url.prefix { $0 != ":" }.lowercased()
        self.isHTTP = scheme == "http" || scheme == "https"
        guard let partial = self.partial else { throw TransferFailure(.transient, "the partial file is not open") }
        var offset: UInt64
        if firstAttempt, let prepared = self.preparedOffset {
            offset = prepared
        } else {
            do {
                if self.restartFromZero {
                    try partial.reset()
                    self.restartFromZero = false
                }
                offset = try partial.prepareResume(keepingAtMost: firstAttempt ? self.request.resumeOffset : nil)
            } catch {
                throw TransferFailure(
                    error.isTransient ? .transient : .permanent,
                    "cannot read the partial file: \(error)"
                )
            }
        }
        self.preparedOffset = nil
        let stored = offset > 0 ? partial.validator.flatMap(Validators.init(encoded:)) : nil
        let validators = stored ?? self.request.partialValidators
        var ifRange: String?
        if offset > 0, scheme == "smb" || scheme == "smbs" {
            // libcurl's SMB ignores a resume offset and sends the file from its start: start over.
            do { try partial.reset() } catch {
                throw TransferFailure(.transient, "cannot reset the partial file: \(error)")
            }
            offset = 0
        }
        if offset > 0, self.isHTTP {
            ifRange = validators?.ifRange
            if ifRange == nil {
                // Without a validator a resumed range could splice two versions of the file: start over.
                do { try partial.reset() } catch {
                    throw TransferFailure(.transient, "cannot reset the partial file: \(error)")
                }
                offset = 0
            }
        }
        self.attemptOffset = offset
        self.responseHeaders = ResponseHeaders()
        self.status = 0
        self.bodyMode = .undetermined
        self.abortFailure = nil
        self.lastByteAt = monotonicNow()
        self.lastProgressAt = self.lastByteAt
        self.lastProgressBytes = offset
        self.errorBuffer[0] = 0
        var headers = try self.configureConnection(url: url, scheme: scheme)
        if self.isHTTP {
            if self.decodeContent {
                try self.set(CURLOPT_ACCEPT_ENCODING, "")
            } else {
                headers.append("Accept-Encoding: identity")
            }
            if offset > 0, let ifRange {
                try self.set(CURLOPT_RANGE, "\(offset)-")
                headers.append("If-Range: \(ifRange)")
            } else if let current = self.request.currentValidators, partial.length == 0,
                LocalPaths.exists(self.request.destination)
            {
                if let etag = current.etag { headers.append("If-None-Match: \(etag)") }
                if let date = current.lastModified { headers.append("If-Modified-Since: \(date)") }
            }
        } else if offset > 0 {
            try check(barge_easy_setopt_off_t(self.easy, CURLOPT_RESUME_FROM_LARGE, curl_off_t(offset)))
        }
        try self.setHeaders(headers)
        self.continuation.yield(.started(url: url, offset: offset))
    }

    /// Resets the easy handle and sets what every attempt of every kind needs: the URL, the callbacks, TLS,
    /// timeouts, the interface and socket marking, the credentials. Returns the entry's own headers (sent only to
    /// its own origin).
    func configureConnection(url: String, scheme: String) throws(TransferFailure) -> [String] {
        curl_easy_reset(self.easy)
        let me = Unmanaged.passUnretained(self).toOpaque()
        try self.set(CURLOPT_URL, url)
        try self.set(CURLOPT_PRIVATE, pointer: me)
        try self.set(CURLOPT_NOSIGNAL, 1)
        if ActiveTransfer.verbose { try self.set(CURLOPT_VERBOSE, 1) }
        try self.set(CURLOPT_ERRORBUFFER, pointer: UnsafeMutableRawPointer(self.errorBuffer))
        try check(barge_easy_setopt_pointer(self.easy, CURLOPT_WRITEDATA, me))
        try check(
            barge_easy_setopt_write_function(self.easy) { data, size, count, context in
                let transfer = Unmanaged<ActiveTransfer>.fromOpaque(context!).takeUnretainedValue()
                return transfer.receiveBody(UnsafeRawBufferPointer(start: data, count: size * count))
            }
        )
        try check(barge_easy_setopt_pointer(self.easy, CURLOPT_HEADERDATA, me))
        try check(
            barge_easy_setopt_header_function(self.easy) { data, size, count, context in
                let transfer = Unmanaged<ActiveTransfer>.fromOpaque(context!).takeUnretainedValue()
                transfer.receiveHeader(UnsafeRawBufferPointer(start: data, count: size * count))
                return size * count
            }
        )
        let schemes = self.request.allowedSchemes.joined(separator: ",")
        try self.set(CURLOPT_PROTOCOLS_STR, schemes)
        // Redirects are followed by the engine (RedirectPolicy): it checks where each leads and keeps the entry's
        // headers and credentials for its own origin, which libcurl's following does not.
        try self.set(CURLOPT_FOLLOWLOCATION, 0)
        try self.set(CURLOPT_SSLVERSION, 6)  // CURL_SSLVERSION_TLSv1_2: TLS 1.2 at least
        try self.set(CURLOPT_CONNECTTIMEOUT_MS, Int(self.request.connectTimeout * 1000))
        try self.set(CURLOPT_TCP_KEEPALIVE, 1)
        try self.set(CURLOPT_BUFFERSIZE, self.bufferSize)
        try self.set(CURLOPT_SSL_VERIFYPEER, 1)
        try self.set(CURLOPT_SSL_VERIFYHOST, 2)
        if let caFile = self.request.tls.caFile { try self.set(CURLOPT_CAINFO, caFile) }
        // A client certificate is a credential too: presented to the entry's own origin only.
        if self.attemptIsAtSourceOrigin {
            if let certificate = self.request.tls.clientCertificate { try self.set(CURLOPT_SSLCERT, certificate) }
            if let key = self.request.tls.clientKey { try self.set(CURLOPT_SSLKEY, key) }
        }
        if let proxy = self.request.proxy { try self.set(CURLOPT_PROXY, proxy) }
        // Bound to an uplink (SO_BINDTODEVICE): a cheaper one than the route's choice (libcurl reuses only a
        // connection bound the same way).
        if let interface = self.request.interface { try self.set(CURLOPT_INTERFACE, "if!" + interface) }
        let bound = self.traffic?.isBound == true ? self.traffic : nil
        // A background upload (yielding, or under a cap) keeps little unsent in its socket.
        let littleUnsent = self.request.upload != nil && (self.request.yields || self.request.maxRate != .off)
        if bound != nil || self.request.lowerEffort || self.request.congestionControl != nil || littleUnsent {
            let socketClass = self.sockets.socketClass(
                traffic: bound,
                lowerEffort: self.request.lowerEffort,
                congestionControl: self.request.congestionControl,
                holdsLittleUnsent: littleUnsent
            )
            try self.check(barge_easy_setopt_sockopt_function(self.easy, configureSocket))
            try self.set(CURLOPT_SOCKOPTDATA, pointer: socketClass.pointer)
            try self.check(barge_easy_setopt_closesocket_function(self.easy, closeSocket))
            try self.set(CURLOPT_CLOSESOCKETDATA, pointer: socketClass.pointer)
        }
        if scheme == "sftp" || scheme == "scp" {
            // The host key is checked against the known-hosts file: an unknown or changed key is refused.
            guard let knownHosts = self.request.sshKnownHosts else {
                throw TransferFailure(
                    .permanent,
                    "\(scheme):// needs a known-hosts file (ssh-known-hosts in barge.yaml)"
                )
            }
            try self.set(CURLOPT_SSH_KNOWNHOSTS, knownHosts)
            try self.set(CURLOPT_SSH_AUTH_TYPES, 1)  // CURLSSH_AUTH_PUBLICKEY
        }
        let atSourceOrigin = self.attemptIsAtSourceOrigin
        if atSourceOrigin { try self.configureCredentials() }
        return atSourceOrigin ? self.request.headers.map { "\($0.name): \($0.value)" } : []
    }

    /// Sends `headers` with the attempt.
    func setHeaders(_ headers: [String]) throws(TransferFailure) {
        curl_slist_free_all(self.headerList)
        self.headerList = nil
        for header in headers { self.headerList = curl_slist_append(self.headerList, header) }
        try check(barge_easy_setopt_slist(self.easy, CURLOPT_HTTPHEADER, self.headerList))
    }

    /// Bytes per read: large for speed, smaller under a low rate cap so pacing stays smooth.
    var bufferSize: Int {
        guard let rate = self.bucket?.rate else { return 256 * 1024 }
        return min(256 * 1024, max(16 * 1024, Int(rate / 20)))
    }

    private func configureCredentials() throws(TransferFailure) {
        guard let credentials = self.request.credentials else { return }
        let secret: String
        do {
            secret = try SecretFile.read(credentials.path)
        } catch {
            throw TransferFailure(.permanent, "cannot read the secret file \(credentials.path): \(error)")
        }
        switch credentials {
        case .bearerFile:
            try self.set(CURLOPT_HTTPAUTH, 64)  // CURLAUTH_BEARER
            try self.set(CURLOPT_XOAUTH2_BEARER, secret)
        case .basicFile:
            try self.set(CURLOPT_HTTPAUTH, 1)  // CURLAUTH_BASIC
            try self.set(CURLOPT_USERPWD, secret)
        case .sshKeyFile(let path):
            _ = secret  // read above only to check the file is there and readable
            try self.set(CURLOPT_SSH_PRIVATE_KEYFILE, path)
        }
    }

    func set(_ option: CURLoption, _ value: Int) throws(TransferFailure) {
        try check(barge_easy_setopt_long(self.easy, option, value))
    }

    func set(_ option: CURLoption, _ value: String) throws(TransferFailure) {
        try check(barge_easy_setopt_string(self.easy, option, value))  // libcurl copies strings
    }

    private func set(_ option: CURLoption, pointer: UnsafeMutableRawPointer) throws(TransferFailure) {
        try check(barge_easy_setopt_pointer(self.easy, option, pointer))
    }

    func check(_ code: CURLcode) throws(TransferFailure) {
        guard code != CURLE_OK else { return }
        throw TransferFailure(.permanent, "libcurl refused an option: \(String(cString: curl_easy_strerror(code)))")
    }

    // MARK: Callbacks

    func receiveHeader(_ bytes: UnsafeRawBufferPointer) {
        // Work on the bytes: a header line is ASCII in practice, and this runs for every header of every file.
        var end = bytes.count
        while end > 0, bytes[end - 1] == UInt8(ascii: "\r") || bytes[end - 1] == UInt8(ascii: "\n") { end -= 1 }
        let line = UnsafeRawBufferPointer(rebasing: bytes[0..<end])
        if line.starts(with: "HTTP/".utf8) {
            // A new response (a redirect, a 100 Continue, or the final one): forget the previous headers.
            self.responseHeaders = ResponseHeaders()
            let fields = line.split(separator: UInt8(ascii: " "), maxSplits: 2)
            self.httpVersion = fields.first.map { String(decoding: $0, as: UTF8.self) } ?? ""
            self.status = fields.count > 1 ? Int(String(decoding: fields[1], as: UTF8.self)) ?? 0 : 0
            return
        }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")),
            let field = ResponseHeaders.Field(name: UnsafeRawBufferPointer(rebasing: line[0..<colon]))
        else { return }
        var start = colon + 1
        var stop = line.count
        while start < stop, line[start] == UInt8(ascii: " ") || line[start] == UInt8(ascii: "\t") { start += 1 }
        while stop > start, line[stop - 1] == UInt8(ascii: " ") || line[stop - 1] == UInt8(ascii: "\t") { stop -= 1 }
        self.responseHeaders[field] = String(decoding: line[start..<stop], as: UTF8.self)
        if self.status == 104, field == .location, let upload = self.upload {
            // 104 Upload Resumption Supported: the PUT can be resumed at this URL; kept at once (a kill may follow).
            upload.exchange.announce(self.responseHeaders[.location]!, base: self.attemptURL)
            if let session = upload.session { self.continuation.yield(.uploadSession(session)) }
        }
    }

    /// The write callback: content goes to the partial, paced; anything else is dropped.
    func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        if let upload = self.upload {
            upload.keepReply(bytes)
            return bytes.count
        }
        if self.bodyMode == .undetermined {
            self.decideBodyMode()
            if self.abortFailure != nil || self.restartFromZero { return 0 }
        }
        switch self.bodyMode {
        case .discard, .undetermined:
            return bytes.count
        case .write:
            break
        }
        let now = monotonicNow()
        guard self.pass(bytes.count, now: now) else { return Int(CURL_WRITEFUNC_PAUSE) }
        do {
            try self.partial!.append(bytes)
        } catch {
            self.abortFailure = TransferFailure(
                error.isTransient ? .transient : .permanent,
                "cannot write \(self.request.destination): \(error.reason)"
            )
            return 0
        }
        self.transferred += UInt64(bytes.count)
        if let traffic = self.traffic, !traffic.isBound { traffic.wire.add(UInt64(bytes.count), ordering: .relaxed) }
        self.lastByteAt = now
        if let interval = self.request.checkpointInterval {
            self.sinceCheckpoint += UInt64(bytes.count)
            if self.sinceCheckpoint >= interval { self.checkpoint() }
        }
        return bytes.count
    }

    /// Whether `count` bytes may move now: its own cap, the budget all share and its link's yield budget each let
    /// them pass (they are then taken from each); otherwise the transfer is paced until the longest wait is over.
    func pass(_ count: Int, now: Double) -> Bool {
        let direction: YieldController.Direction = self.upload == nil ? .receiving : .sending
        let yieldPacer = self.request.yields && self.traffic?.isBound == true ? self.traffic?.pacer(direction) : nil
        let wait = max(
            self.bucket?.delay(now: now) ?? 0,
            self.globalPacer.delay(now: now) ?? 0,
            yieldPacer?.delay(now: now) ?? 0
        )
        if wait > 0 {
            self.pacedUntil = now + wait
            return false
        }
        self.bucket?.take(count)
        self.globalPacer.take(count)
        yieldPacer?.take(count)
        return true
    }

    /// Makes the partial durable in the background (``PartialFile/syncInBackground(_:)``); the engine reports the
    /// offset when the sync holds (``EngineCommand/checkpointed(_:_:resets:offset:)``).
    func checkpoint() {
        guard let partial = self.partial else { return }
        self.sinceCheckpoint = 0
        let (id, checkpointed) = (self.id, self.checkpointed)
        _ = try? partial.syncInBackground { offset, resets in
            checkpointed(id, partial, resets, offset)
        }
    }

    /// Decides, once the headers are complete, whether the body is content and where it goes.
    private func decideBodyMode() {
        var code = 0
        _ = barge_easy_getinfo_long(self.easy, CURLINFO_RESPONSE_CODE, &code)
        guard self.isHTTP else {
            self.bodyMode = .write
            self.reportResponse(status: 0, offset: self.attemptOffset)
            return
        }
        self.status = code
        let encoding = self.responseHeaders[.contentEncoding]?.lowercased()
        let encoded = encoding != nil && encoding != "identity"
        switch code {
        case 206:
            guard let range = ContentRange(self.responseHeaders[.contentRange]), range.start == self.attemptOffset
            else {
                self.restartFromZero = true
                return
            }
            if encoded {
                // A compressed range cannot be spliced onto raw bytes: fetch the whole file instead.
                self.restartFromZero = true
                return
            }
            self.bodyMode = .write
            if let total = range.total { self.reserve(upTo: total) }
            self.reportResponse(status: code, offset: self.attemptOffset, total: range.total)
        case 200...299:
            if encoded, !self.decodeContent {
                self.decodeContent = true
                self.restartFromZero = true
                return
            }
            if self.attemptOffset > 0 {
                // The server sent the whole file: it changed (If-Range failed) or ignores ranges. Start over.
                do { try self.partial!.reset() } catch {
                    self.abortFailure = TransferFailure(.transient, "cannot reset the partial file: \(error)")
                    return
                }
                self.attemptOffset = 0
            }
            let total = self.responseHeaders[.contentLength].flatMap { UInt64($0) }
            if let expected = self.request.expectedSize, let total, !encoded, total != expected {
                self.abortFailure = TransferFailure(
                    .permanent,
                    "size mismatch: expected \(expected) bytes, \(URLRules.host(of: self.currentSource)) has \(total)"
                )
                return
            }
            self.bodyMode = .write
            if let total, !encoded { self.reserve(upTo: total) }
            self.partial?.pendingValidator = self.validators.encoded
            self.reportResponse(status: code, offset: 0, total: encoded ? nil : total)
        default:
            self.bodyMode = .discard
        }
    }

    /// Reserves the file's blocks (``PartialFile/reserve(upTo:)``) unless the transfer takes checkpoints: each
    /// checkpoint's `fsync` would then also convert the reserved blocks it covers, and under load the
    /// checkpoints fell two or three intervals behind the bytes received (the agent's kill test).
    private func reserve(upTo total: UInt64) {
        guard self.request.checkpointInterval == nil else { return }
        self.partial?.reserve(upTo: total)
    }

    var validators: Validators {
        Validators(etag: self.responseHeaders[.etag], lastModified: self.responseHeaders[.lastModified])
    }

    private func reportResponse(status: Int, offset: UInt64, total: UInt64? = nil) {
        self.continuation.yield(
            .response(
                TransferResponse(
                    status: status,
                    httpVersion: self.isHTTP ? self.httpVersion : "",
                    validators: self.validators,
                    totalSize: total,
                    offset: offset
                )
            )
        )
    }

    // MARK: Progress

    /// Reports progress if a quarter second has passed since the last report and bytes arrived.
    /// Whether it received bytes that no progress report told yet.
    var hasUnreportedBytes: Bool { self.received != self.lastProgressBytes }

    func reportProgressIfDue(now: Double, force: Bool = false) {
        let received = self.received
        let elapsed = now - self.lastProgressAt
        // A transfer whose bytes stopped (paced down, waiting for its server) still tells its rate falling, once a
        // second, until it is nothing.
        let stopped = received == self.lastProgressBytes && self.bytesPerSecond > 0 && elapsed >= 1
        guard force || stopped || (elapsed >= 0.25 && received != self.lastProgressBytes) else { return }
        if elapsed > 0, received >= self.lastProgressBytes {
            let instant = Double(received - self.lastProgressBytes) / elapsed
            self.bytesPerSecond = self.bytesPerSecond == 0 ? instant : 0.7 * self.bytesPerSecond + 0.3 * instant
            if self.bytesPerSecond < 1 { self.bytesPerSecond = 0 }
        }
        self.lastProgressAt = now
        self.lastProgressBytes = received
        let total = self.upload?.source.size ?? self.request.expectedSize ?? self.totalFromResponse
        self.continuation.yield(
            .progress(TransferProgress(received: received, total: total, bytesPerSecond: self.bytesPerSecond))
        )
    }

    private var totalFromResponse: UInt64? {
        if self.status == 206 { return ContentRange(self.responseHeaders[.contentRange])?.total }
        if self.responseHeaders[.contentEncoding] != nil { return nil }
        return self.responseHeaders[.contentLength].flatMap { UInt64($0) }
    }
}

/// The response headers the engine acts on. The others are not kept: each would cost two strings and a slot in
/// a dictionary for every file.
struct ResponseHeaders {
    /// A header the engine acts on.
    enum Field: Int, CaseIterable {
        case contentEncoding, contentLength, contentRange, etag, lastModified, location, retryAfter
        // tus's.
        case uploadOffset, uploadLength, tusResumable, tusVersion, tusChecksumAlgorithm, tusExtension
        // The resumable-uploads draft's.
        case uploadDraftInteropVersion

        /// The field a header name stands for (ASCII, any case); nil for a header the engine ignores.
        init?(name: UnsafeRawBufferPointer) {
            guard let field = Self.allCases.first(where: { Self.equalIgnoringCase(name, $0.name) }) else { return nil }
            self = field
        }

        /// The lowercase header name.
        var name: StaticString {
            switch self {
            case .contentEncoding: "content-encoding"
            case .contentLength: "content-length"
            case .contentRange: "content-range"
            case .etag: "etag"
            case .lastModified: "last-modified"
            case .location: "location"
            case .retryAfter: "retry-after"
            case .uploadOffset: "upload-offset"
            case .uploadLength: "upload-length"
            case .tusResumable: "tus-resumable"
            case .tusVersion: "tus-version"
            case .tusChecksumAlgorithm: "tus-checksum-algorithm"
            case .tusExtension: "tus-extension"
            case .uploadDraftInteropVersion: "upload-draft-interop-version"
            }
        }

        private static func equalIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercase: StaticString) -> Bool {
            guard bytes.count == lowercase.utf8CodeUnitCount else { return false }
            let expected = lowercase.utf8Start
            for index in 0..<bytes.count {
                let byte = bytes[index]
                let folded = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
                if folded != expected[index] { return false }
            }
            return true
        }
    }

    private var values = InlineArray<14, String?>(repeating: nil)  // by Field.rawValue

    subscript(field: Field) -> String? {
        get { self.values[field.rawValue] }
        set { self.values[field.rawValue] = newValue }
    }
}

/// A `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`) header.
struct ContentRange: Equatable {
    var start: UInt64?
    var end: UInt64?
    var total: UInt64?

    init?(_ header: String?) {
        guard let header, header.lowercased().hasPrefix("bytes ") else { return nil }
        let value = header.dropFirst(6)
        let parts = value.split(separator: "/", maxSplits: 1)
        guard parts.count == 2 else { return nil }
        self.total = UInt64(parts[1])
        if parts[0] != "*" {
            let bounds = parts[0].split(separator: "-")
            guard bounds.count == 2, let start = UInt64(bounds[0]), let end = UInt64(bounds[1]) else { return nil }
            self.start = start
            self.end = end
        }
    }
}

/// Reads secret files (tokens, `user:password`) for credentials, without logging them.
enum SecretFile {
    /// The file's content without a trailing line break.
    static func read(_ path: String) throws(BargeSystemError) -> String {
        let descriptor = try systemCall("open", path) { open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = try systemCall("read", path) { Glibc.read(descriptor, &chunk, chunk.count) }
            if count == 0 { break }
            bytes += chunk[0..<count]
            if bytes.count > 65_536 { break }
        }
        return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: "\r\n")
    }
}

/// Existence checks used while configuring a request.
enum LocalPaths {
    static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }
}

/// One interface's share of the engine: the bytes Barge's transfers bound to it received (the agent subtracts them
/// from the link's counter to see other traffic), and the budget of those that yield to it.
final class InterfaceTraffic: Sendable {
    /// The TCP payload the kernel received for the transfers' connections (``SocketLedger``); for the transfers
    /// bound to no interface, the bytes they read.
    let wire = Atomic<UInt64>(0)
    /// The TCP payload the peers acknowledged for its connections; for unbound transfers, the bytes they sent.
    let wireSent = Atomic<UInt64>(0)
    /// The yield budget of its downloads.
    let yieldPacer = GlobalPacer()
    /// The yield budget of its uploads.
    let sendYieldPacer = GlobalPacer()

    /// The yield budget of transfers going `direction`.
    func pacer(_ direction: YieldController.Direction) -> GlobalPacer {
        direction == .sending ? self.sendYieldPacer : self.yieldPacer
    }
    /// Whether its transfers are bound to its interface (else it is the engine's one count of unbound transfers).
    let isBound: Bool

    init(isBound: Bool) { self.isBound = isBound }
}

/// The sockets of one engine thread's connections, each with the interface traffic it counts towards: what the
/// kernel received for each (TCP payload, `tcpi_bytes_received`) is added to its interface's ``InterfaceTraffic/wire``
/// when the engine counts (``count()``) and when libcurl closes it, so no byte is lost between counts. Unlike the
/// bytes the transfers read, this follows the interface's own counter while transfers are paced (libcurl reads a
/// whole buffer from the socket and holds it while a transfer waits; TCP refills the window in a burst).
///
/// Touched only on its engine thread (libcurl calls the callbacks from within the multi handle's calls there).
final class SocketLedger: @unchecked Sendable {
    private var sockets: [curl_socket_t: (traffic: InterfaceTraffic, received: UInt64, sent: UInt64)] = [:]
    /// One per interface and marking, made once and kept while the engine runs (libcurl keeps each connection's
    /// callback data for as long as the connection lives, past its transfer).
    private var classes: [Kind: SocketClass] = [:]

    /// What tells socket classes apart.
    private struct Kind: Hashable {
        var traffic: ObjectIdentifier?
        var lowerEffort: Bool
        var congestionControl: String?
        var holdsLittleUnsent: Bool
    }

    /// The callbacks' data for a transfer's new connections.
    func socketClass(
        traffic: InterfaceTraffic?,
        lowerEffort: Bool,
        congestionControl: String?,
        holdsLittleUnsent: Bool
    ) -> SocketClass {
        let kind = Kind(
            traffic: traffic.map(ObjectIdentifier.init),
            lowerEffort: lowerEffort,
            congestionControl: congestionControl,
            holdsLittleUnsent: holdsLittleUnsent
        )
        if let known = self.classes[kind] { return known }
        let made = SocketClass(
            ledger: self,
            traffic: traffic,
            lowerEffort: lowerEffort,
            congestionControl: congestionControl,
            holdsLittleUnsent: holdsLittleUnsent
        )
        self.classes[kind] = made
        return made
    }

    func opened(_ socket: curl_socket_t, for traffic: InterfaceTraffic) { self.sockets[socket] = (traffic, 0, 0) }

    /// Counts every socket's new bytes.
    func count() {
        for socket in self.sockets.keys { self.count(socket) }
    }

    /// Counts a socket's new bytes and forgets it.
    func closing(_ socket: curl_socket_t) {
        self.count(socket)
        self.sockets[socket] = nil
    }

    private func count(_ socket: curl_socket_t) {
        guard let entry = self.sockets[socket] else { return }
        var received: UInt64 = 0
        var sent: UInt64 = 0
        guard CBargeLinux_tcp_bytes(socket, &received, &sent) == 0 else { return }
        if received > entry.received { entry.traffic.wire.add(received - entry.received, ordering: .relaxed) }
        if sent > entry.sent { entry.traffic.wireSent.add(sent - entry.sent, ordering: .relaxed) }
        self.sockets[socket] = (entry.traffic, max(received, entry.received), max(sent, entry.sent))
    }
}

/// What a transfer's connections are made with: the ledger that counts their bytes (when bound to an interface)
/// and whether they are marked Lower-Effort. Passed to libcurl's socket callbacks as their data.
final class SocketClass: @unchecked Sendable {
    unowned let ledger: SocketLedger
    let traffic: InterfaceTraffic?
    let lowerEffort: Bool
    let congestionControl: String?
    /// Whether the socket may hold only a little unsent data (``SocketClass/unsentBytes``): a paced or yielding
    /// upload's pace then reaches the wire at once, instead of after the megabytes the kernel queued before it.
    let holdsLittleUnsent: Bool
    /// What such a socket holds unsent at most.
    static let unsentBytes: Int32 = 128 * 1024

    init(
        ledger: SocketLedger,
        traffic: InterfaceTraffic?,
        lowerEffort: Bool,
        congestionControl: String?,
        holdsLittleUnsent: Bool
    ) {
        self.ledger = ledger
        self.traffic = traffic
        self.lowerEffort = lowerEffort
        self.congestionControl = congestionControl
        self.holdsLittleUnsent = holdsLittleUnsent
    }

    /// The pointer libcurl hands back to the callbacks (the ledger keeps the object alive).
    var pointer: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
}

/// A new connection's socket: marked Lower-Effort (DSCP LE, RFC 8622: code point 1, the traffic class byte 0x04)
/// where asked, IPv4 or IPv6 (a socket the kernel refuses it for is left as it is), given its congestion control
/// where asked and the kernel has it (else left with the system's), and entered in the ledger.
let configureSocket: curl_sockopt_callback = { data, socket, purpose in
    guard purpose == CURLSOCKTYPE_IPCXN, let data else { return CURL_SOCKOPT_OK }
    let socketClass = Unmanaged<SocketClass>.fromOpaque(data).takeUnretainedValue()
    if socketClass.lowerEffort {
        var domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(socket, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 {
            var lowerEffort: Int32 = 0x04
            let size = socklen_t(MemoryLayout<Int32>.size)
            if domain == AF_INET6 {
                _ = setsockopt(socket, Int32(IPPROTO_IPV6), IPV6_TCLASS, &lowerEffort, size)
            } else if domain == AF_INET {
                _ = setsockopt(socket, Int32(IPPROTO_IP), IP_TOS, &lowerEffort, size)
            }
        }
    }
    if let congestionControl = socketClass.congestionControl {
        _ = CBargeLinux_set_congestion_control(socket, congestionControl)
    }
    if socketClass.holdsLittleUnsent { _ = CBargeLinux_set_notsent_lowat(socket, SocketClass.unsentBytes) }
    if let traffic = socketClass.traffic { socketClass.ledger.opened(socket, for: traffic) }
    return CURL_SOCKOPT_OK
}

/// A connection's socket about to close: its last bytes counted, then closed.
let closeSocket: curl_closesocket_callback = { data, socket in
    if let data { Unmanaged<SocketClass>.fromOpaque(data).takeUnretainedValue().ledger.closing(socket) }
    return close(socket)
}

/// The engine-wide rate budget that all transfers draw from, on every engine thread (a lock each admission: uncontended
/// but for the moments two threads receive at once).
final class GlobalPacer: Sendable {
    private let bucket = Mutex<TokenBucket?>(nil)

    /// See ``TokenBucket/delay(now:)``.
    func delay(now: Double) -> Double? { self.bucket.withLock { $0?.delay(now: now) } }

    /// See ``TokenBucket/take(_:)``.
    func take(_ bytes: Int) { self.bucket.withLock { $0?.take(bytes) } }

    /// The budget's rate, bytes per second; nil while it is off.
    var rate: Double? { self.bucket.withLock { $0?.rate } }

    /// Changes the budget; a budget already running keeps its tokens.
    func set(_ limit: RateLimit, now: Double) {
        self.bucket.withLock { $0 = TokenBucket.adjusted($0, to: limit, now: now) }
    }
}

/// A partial opened and made ready to resume. Re-hashing a large partial reads it whole, which runs off the
/// engine thread so the network does not wait for it.
struct PreparedPartial: Sendable {
    let partial: PartialFile
    let offset: UInt64

    /// Opens (or creates) the partial for `request`.
    static func open(for request: TransferRequest, directories: DirectoryCache) -> Result<PartialFile, TransferFailure>
    {
        do {
            return .success(
                try PartialFile(
                    destination: request.destination,
                    directories: directories,
                    hashing: request.hashesContent,
                    resumable: request.mayHaveEarlierPartial,
                    owner: request.owner?.uid
                )
            )
        } catch {
            return .failure(
                TransferFailure(
                    error.isTransient ? .transient : .permanent,
                    "cannot write beside \(request.destination): \(error)"
                )
            )
        }
    }

    /// Re-hashes what the partial already holds (up to the request's resume offset) and finds where to resume.
    static func resume(_ partial: PartialFile, for request: TransferRequest) -> Result<PreparedPartial, TransferFailure>
    {
        guard partial.sizeWhenOpened > 0 else { return .success(PreparedPartial(partial: partial, offset: 0)) }
        do {
            return .success(
                PreparedPartial(
                    partial: partial,
                    offset: try partial.prepareResume(keepingAtMost: request.resumeOffset)
                )
            )
        } catch {
            return .failure(
                TransferFailure(error.isTransient ? .transient : .permanent, "cannot read the partial file: \(error)")
            )
        }
    }
}

/// Curl easy handles of finished transfers, reset and kept for the next ones: a burst of small files then sets
/// up no new handle (nor the memory behind one) per file.
///
/// Confined to the engine thread.
final class EasyHandlePool {
    private var free: [UnsafeMutableRawPointer] = []
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    deinit { for handle in self.free { curl_easy_cleanup(handle) } }

    func take() -> UnsafeMutableRawPointer { self.free.popLast() ?? curl_easy_init()! }

    func give(_ handle: UnsafeMutableRawPointer) {
        guard self.free.count < self.capacity else {
            curl_easy_cleanup(handle)
            return
        }
        self.free.append(handle)  // reset by the next attempt's configuration, which sets every option again
    }
}
