// Typed wrappers for libcurl's variadic functions.
//
// Swift cannot call C variadic functions such as curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt, so
// each argument type gets one static inline wrapper here. Nothing else belongs in this header.
#ifndef BARGE_CCURL_SHIM_H
#define BARGE_CCURL_SHIM_H

#include <curl/curl.h>

// curl_easy_setopt is variadic: one wrapper per argument type.
static inline CURLcode barge_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode barge_easy_setopt_off_t(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode barge_easy_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode barge_easy_setopt_pointer(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode barge_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode barge_easy_setopt_write_function(CURL *h, curl_write_callback cb) {
    return curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, cb);
}
static inline CURLcode barge_easy_setopt_read_function(CURL *h, curl_read_callback cb) {
    return curl_easy_setopt(h, CURLOPT_READFUNCTION, cb);
}
static inline CURLcode barge_easy_setopt_seek_function(CURL *h, curl_seek_callback cb) {
    return curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, cb);
}
static inline CURLcode barge_easy_setopt_header_function(CURL *h, curl_write_callback cb) {
    return curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, cb);
}
static inline CURLcode barge_easy_setopt_xferinfo_function(CURL *h, curl_xferinfo_callback cb) {
    return curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, cb);
}
static inline CURLcode barge_easy_setopt_sockopt_function(CURL *h, curl_sockopt_callback cb) {
    return curl_easy_setopt(h, CURLOPT_SOCKOPTFUNCTION, cb);
}
static inline CURLcode barge_easy_setopt_closesocket_function(CURL *h, curl_closesocket_callback cb) {
    return curl_easy_setopt(h, CURLOPT_CLOSESOCKETFUNCTION, cb);
}

// curl_easy_getinfo is variadic: one wrapper per result type.
static inline CURLcode barge_easy_getinfo_long(CURL *h, CURLINFO i, long *out) { return curl_easy_getinfo(h, i, out); }
static inline CURLcode barge_easy_getinfo_off_t(CURL *h, CURLINFO i, curl_off_t *out) { return curl_easy_getinfo(h, i, out); }
static inline CURLcode barge_easy_getinfo_string(CURL *h, CURLINFO i, char **out) { return curl_easy_getinfo(h, i, out); }
static inline CURLcode barge_easy_getinfo_private(CURL *h, void **out) {
    return curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)out);
}

// curl_multi_setopt is variadic too.
static inline CURLMcode barge_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }

#endif
