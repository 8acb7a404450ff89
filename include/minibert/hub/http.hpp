// SPDX-License-Identifier: MIT
#pragma once
/* A small libcurl wrapper for the hub downloader: one request (GET or HEAD) per call, never following redirects by
   itself (the caller decides, so a token never travels to a redirect's host), with a connect timeout and a read
   timeout (no byte for N seconds), an optional Range start, the response's status and headers, and the body streamed
   to a callback (2xx answers) or kept in a short string (others, for error messages). Only http and https.
   Needs libcurl: compiled only where MINIBERT_WITH_CURL is defined (CMake's minibert::hub target). */

#include <algorithm>   // min
#include <cctype>      // isalnum, tolower, isspace
#include <cstdint>     // int64_t
#include <cstdio>      // snprintf
#include <functional>  // function
#include <map>         // map
#include <memory>      // unique_ptr
#include <string>      // string
#include <string_view> // string_view
#include <vector>      // vector

#include <curl/curl.h>

#include <minibert/error.hpp>

namespace minibert::hub {

/// @brief one HTTP request
struct http_request {
  std::string method = "GET";       ///< GET or HEAD
  std::string url;                  ///< http:// or https://
  std::vector<std::string> headers; ///< "Name: value" lines
  std::int64_t range_from = 0;      ///< > 0: ask for the bytes from this offset on ("Range: bytes=N-")
  long connect_timeout_s = 10;      ///< give up connecting after this long
  long read_timeout_s = 10;         ///< give up when no byte arrives for this long
};

/// @brief what came back: status and headers of the (last) response, or a transport error
struct http_response {
  std::string url;                            ///< the URL asked
  long status = 0;                            ///< 0 when no response arrived
  std::map<std::string, std::string> headers; ///< lower-case names
  std::string redirect_url;                   ///< a 3xx's Location, made absolute; else ""
  std::string error;                          ///< transport failure (timeout, refused, dropped); "" when complete
  std::string short_body;                     ///< up to 4 KiB of a non-2xx answer's body
  std::int64_t body_bytes = 0;                ///< body bytes received (all of them passed to the sink for a 2xx)

  /// @brief a header's value by lower-case name, or "" when absent
  std::string header(const std::string& lower_name) const {
    const auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
  bool ok() const { return error.empty() && status >= 200 && status < 300; }
  bool is_redirect() const { return error.empty() && status >= 300 && status < 400; }
};

/// @brief receives a 2xx answer's body piece by piece (`head` holds its status and headers); false aborts the
/// transfer (the response's error then says so)
using body_sink = std::function<bool(const http_response& head, const char* data, std::size_t n)>;

/// @brief `s` percent-encoded as Python's urllib.parse.quote: letters, digits and "_.-~" kept, '/' kept when
/// `keep_slash`, every other byte as %XX
inline std::string percent_encode(std::string_view s, bool keep_slash) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~' || (keep_slash && c == '/')) {
      out += char(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

namespace detail {

inline void curl_init_once() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) throw error("hub", std::string("libcurl failed to initialize: ") + curl_easy_strerror(rc));
}

struct curl_deleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct slist_deleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

// the scheme, host and port of a URL, lower-cased ("https://huggingface.co:443"); "" when it does not parse
inline std::string origin_of(const std::string& url) {
  CURLU* u = curl_url();
  if (!u) return "";
  std::string origin;
  char *scheme = nullptr, *host = nullptr, *port = nullptr;
  if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
    origin = std::string(scheme) + "://" + host + ":" + port;
    for (char& c : origin) c = char(std::tolower(static_cast<unsigned char>(c)));
  }
  curl_free(scheme);
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return origin;
}

// the state one transfer's callbacks share
struct transfer {
  CURL* curl = nullptr;
  http_response response;
  const body_sink* sink = nullptr;
  bool sink_refused = false;
};

inline std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

inline std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto& t = *static_cast<transfer*>(user);
  const std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) { // a new response (after a 100 Continue): start over
    t.response.headers.clear();
    return size * n;
  }
  const std::size_t colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  std::string name = line.substr(0, colon);
  for (char& c : name) c = char(std::tolower(static_cast<unsigned char>(c)));
  t.response.headers[trim(name)] = trim(line.substr(colon + 1));
  return size * n;
}

inline std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto& t = *static_cast<transfer*>(user);
  const std::size_t bytes = size * n;
  curl_easy_getinfo(t.curl, CURLINFO_RESPONSE_CODE, &t.response.status);
  t.response.body_bytes += std::int64_t(bytes);
  if (t.response.status < 200 || t.response.status >= 300 || !t.sink || !*t.sink) {
    const std::size_t room = 4096 - std::min<std::size_t>(4096, t.response.short_body.size());
    t.response.short_body.append(data, std::min(room, bytes));
    return bytes;
  }
  if ((*t.sink)(t.response, data, bytes)) return bytes;
  t.sink_refused = true;
  return 0; // aborts the transfer
}

inline void set_protocols(CURL* c) {
#if LIBCURL_VERSION_NUM >= 0x075500 // 7.85: the string forms
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(c, CURLOPT_PROTOCOLS, long(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, long(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

inline void set_options(CURL* c, const http_request& req, transfer& t, curl_slist* headers, char* errbuf) {
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  set_protocols(c);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "minibert/0.1 (libcurl)");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, req.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); // fewer than 1 byte/s for read_timeout_s seconds: give up
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, req.read_timeout_s);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  if (req.method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  const std::string range = std::to_string(req.range_from) + "-";
  if (req.range_from > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str()); // copied by libcurl
}

} // namespace detail

/// @brief the scheme, host and port of two URLs agree (where a token may go: huggingface_hub sends it only when
/// the netloc is the endpoint's)
inline bool same_origin(const std::string& a, const std::string& b) {
  const std::string oa = detail::origin_of(a);
  return !oa.empty() && oa == detail::origin_of(b);
}

/// @brief performs one request (no redirect followed); transport failures are reported in the response's `error`
/// (with the status and bytes so far), never thrown
/// @throws minibert::error("hub", ...) only when libcurl cannot start at all, or for a method other than GET/HEAD
inline http_response http_perform(const http_request& req, const body_sink& sink = nullptr) {
  MINIBERT_CHECK(req.method == "GET" || req.method == "HEAD", "hub", "unsupported HTTP method " << req.method);
  detail::curl_init_once();
  std::unique_ptr<CURL, detail::curl_deleter> curl(curl_easy_init());
  if (!curl) throw error("hub", "libcurl could not create a handle for " + req.url);
  curl_slist* list = nullptr;
  for (const std::string& h : req.headers) list = curl_slist_append(list, h.c_str());
  std::unique_ptr<curl_slist, detail::slist_deleter> headers(list);

  detail::transfer t;
  t.curl = curl.get();
  t.sink = &sink;
  t.response.url = req.url;
  char errbuf[CURL_ERROR_SIZE] = {0};
  detail::set_options(curl.get(), req, t, headers.get(), errbuf);
  const CURLcode rc = curl_easy_perform(curl.get());
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &t.response.status);
  if (char* location = nullptr;
      curl_easy_getinfo(curl.get(), CURLINFO_REDIRECT_URL, &location) == CURLE_OK && location)
    t.response.redirect_url = location;
  if (t.sink_refused) {
    t.response.error = "the download was stopped: the received data could not be stored";
  } else if (rc != CURLE_OK) {
    t.response.error = std::string(curl_easy_strerror(rc)) + (errbuf[0] ? std::string(" (") + errbuf + ")" : "");
  }
  return t.response;
}

} // namespace minibert::hub
