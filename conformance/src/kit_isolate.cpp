// ferrum conformance kit — the isolated runner (kit.hpp, run_isolated): cases run in a child
// process that reports each case's start and outcome through a pipe, so a plugin that kills
// its process (SIGSEGV, abort, exit) is reported with the case that was running, and a fresh
// child carries on with the next case.
#include <ferrum/conformance/kit.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>

namespace ferrum::conformance {

namespace {

// ---- records on the pipe: tag byte, u32 payload length, payload of length-prefixed fields ----
enum Tag : char { kInfo = 'I', kLoadFailed = 'L', kBegin = 'B', kStep = 'S', kOutcome = 'O' };

void put(std::string& s, const std::string& field) {
  const uint32_t n = static_cast<uint32_t>(field.size());
  s.append(reinterpret_cast<const char*>(&n), sizeof n);
  s += field;
}

bool write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t w = ::write(fd, s.data() + done, s.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    done += static_cast<size_t>(w);
  }
  return true;
}

void send(int fd, Tag tag, const std::vector<std::string>& fields) {
  std::string payload;
  for (const auto& f : fields) put(payload, f);
  std::string rec(1, static_cast<char>(tag));
  const uint32_t n = static_cast<uint32_t>(payload.size());
  rec.append(reinterpret_cast<const char*>(&n), sizeof n);
  rec += payload;
  write_all(fd, rec);
}

void send_outcome(int fd, long index, const Outcome& o) {
  send(fd, kOutcome,
       {std::to_string(index), o.op, o.name, o.family, std::to_string(static_cast<int32_t>(o.dtype)),
        std::to_string(static_cast<int>(o.status)), o.message, std::to_string(o.seconds), o.composed ? "1" : "0"});
}

struct Record {
  Tag tag;
  std::vector<std::string> fields;
};

// Takes complete records off the front of `buf`.
std::vector<Record> take_records(std::string& buf) {
  std::vector<Record> out;
  size_t pos = 0;
  while (buf.size() - pos >= 5) {
    uint32_t n = 0;
    std::memcpy(&n, buf.data() + pos + 1, sizeof n);
    if (buf.size() - pos - 5 < n) break;
    Record r{static_cast<Tag>(buf[pos]), {}};
    size_t p = pos + 5;
    const size_t end = p + n;
    while (p + 4 <= end) {
      uint32_t len = 0;
      std::memcpy(&len, buf.data() + p, sizeof len);
      p += 4;
      if (len > end - p) break;
      r.fields.emplace_back(buf.data() + p, len);
      p += len;
    }
    out.push_back(std::move(r));
    pos = end;
  }
  buf.erase(0, pos);
  return out;
}

Outcome outcome_of(const Record& r) {
  Outcome o;
  if (r.fields.size() < 9) return o;
  o.op = r.fields[1];
  o.name = r.fields[2];
  o.family = r.fields[3];
  o.dtype = static_cast<Dtype>(std::stoi(r.fields[4]));
  o.status = static_cast<Status>(std::stoi(r.fields[5]));
  o.message = r.fields[6];
  o.seconds = std::stod(r.fields[7]);
  o.composed = r.fields[8] == "1";
  return o;
}

struct Item {
  const Case* c;
  Dtype dtype;
};

// The child: loads the plugin, reports it (first child only: with the required-slot outcomes),
// then runs items[from..] announcing each one before it starts; items[from] skips its first
// `skip` steps (resumed after a crash in step `skip`).
[[noreturn]] void child(int fd, const std::string& spec, const Options& options, const std::vector<Item>& items,
                        size_t from, uint64_t skip, bool first) {
  int code = 0;
  {
    Backend backend;
    try {
      backend = Backend::load(spec);
    } catch (const std::exception& e) {
      send(fd, kLoadFailed, {e.what()});
      ::_exit(3);
    }
    std::string device;
    try {
      device = backend.device_props(backend.selected_device()).name;
    } catch (const std::exception& e) {
      device = std::string("(device_props failed: ") + e.what() + ")";
    }
    send(fd, kInfo, {std::string(backend.name()), std::string(backend.version()), backend.abi_version(),
                     backend.path(), device});
    set_step_hook([fd](uint64_t n, const std::string& what) { send(fd, kStep, {std::to_string(n), what}); });
    if (first)
      for (const Outcome& o : required_slot_outcomes(backend.api(), options)) send_outcome(fd, -1, o);
    for (size_t i = from; i < items.size(); ++i) {
      send(fd, kBegin, {std::to_string(i)});
      send_outcome(fd, static_cast<long>(i),
                   run_case(backend, *items[i].c, items[i].dtype, options.seed, i == from ? skip : 0));
    }
  }  // the plugin unloads here: a crash in its shutdown is reported too
  ::close(fd);
  ::_exit(code);
}

std::string how_it_ended(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : std::string());
  }
  if (WIFEXITED(status)) return "the process exited with status " + std::to_string(WEXITSTATUS(status));
  return "the process ended (wait status " + std::to_string(status) + ")";
}

}  // namespace

std::vector<Outcome> run_isolated(const std::string& spec, const Options& options,
                                  const std::function<void(const Outcome&, size_t, size_t)>& on_outcome,
                                  PluginInfo* info) {
  std::vector<Item> items;
  for (const Case* c : select_cases(options))
    for (Dtype d : c->dtypes)
      if (options.dtypes.empty() || std::find(options.dtypes.begin(), options.dtypes.end(), d) != options.dtypes.end())
        items.push_back({c, d});

  std::vector<Outcome> out;
  size_t next = 0;
  uint64_t skip = 0;  // steps of items[next] to skip (resuming it after a crash)
  bool first = true;
  size_t expected_total = items.size();
  while (first || next < items.size()) {
    int fds[2];
    if (::pipe(fds) != 0) throw Error(ErrorCode::internal, std::string("conformance: pipe: ") + std::strerror(errno));
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(ErrorCode::internal, std::string("conformance: fork: ") + std::strerror(errno));
    if (pid == 0) {
      ::close(fds[0]);
      child(fds[1], spec, options, items, next, skip, first);
    }
    ::close(fds[1]);
    std::string buf, load_error, last_step;
    uint64_t last_step_no = 0;
    const size_t resumed = skip ? next : items.size();  // the item this child resumes, if any
    long running = -1;  // the item begun and not finished
    bool got_info = false, hung = false;
    char chunk[65536];
    for (;;) {
      pollfd pfd{fds[0], POLLIN, 0};
      const int ready = ::poll(&pfd, 1, static_cast<int>(std::min<uint64_t>(options.timeout_s, 86400) * 1000));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {  // silent for timeout_s: a hang
        hung = true;
        ::kill(pid, SIGKILL);
        break;
      }
      const ssize_t r = ::read(fds[0], chunk, sizeof chunk);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      buf.append(chunk, static_cast<size_t>(r));
      for (const Record& rec : take_records(buf)) {
        if (rec.tag == kLoadFailed && !rec.fields.empty()) load_error = rec.fields[0];
        else if (rec.tag == kInfo && rec.fields.size() >= 5) {
          got_info = true;
          if (info) *info = {rec.fields[0], rec.fields[1], rec.fields[2], rec.fields[3], rec.fields[4]};
        } else if (rec.tag == kBegin && !rec.fields.empty()) {
          running = std::stol(rec.fields[0]);
          last_step.clear();
          last_step_no = 0;
        } else if (rec.tag == kStep && rec.fields.size() >= 2) {
          last_step_no = std::stoull(rec.fields[0]);
          last_step = rec.fields[1];
        }
        else if (rec.tag == kOutcome && !rec.fields.empty()) {
          const long idx = std::stol(rec.fields[0]);
          Outcome o = outcome_of(rec);
          if (idx < 0) ++expected_total;
          else {
            running = -1;
            next = static_cast<size_t>(idx) + 1;
          }
          // The rest of a case resumed after a crash: its crash is already reported; only what
          // the rest found on top of it is.
          if (static_cast<size_t>(idx) == resumed && idx >= 0) {
            if (o.status == Status::pass || o.status == Status::unsupported) continue;
            o.message = "(the rest of the case after the crash) " + o.message;
            ++expected_total;
          }
          out.push_back(std::move(o));
          if (on_outcome) on_outcome(out.back(), out.size(), expected_total);
        }
      }
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const std::string ended = hung ? "it did not finish within " + std::to_string(options.timeout_s) +
                                         " s and was killed (--timeout)"
                                   : how_it_ended(status);
    if (!load_error.empty()) throw Error(ErrorCode::load_failed, load_error);
    if (!got_info)
      throw Error(ErrorCode::load_failed, "the plugin '" + spec + "' ended the process while loading (" + ended + ")");
    first = false;
    const bool clean = !hung && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (running >= 0) {  // the plugin ended the process inside this case
      const Item& it = items[static_cast<size_t>(running)];
      Outcome o;
      o.op = it.c->op;
      o.name = it.c->name;
      o.family = family_of(*it.c);
      o.dtype = it.dtype;
      o.status = Status::crash;
      o.message = "the plugin ended the process during this case: " + ended;
      if (!last_step.empty()) o.message += ", in the step: " + last_step;
      const bool resuming = static_cast<size_t>(running) == resumed;
      if (resuming) ++expected_total;
      out.push_back(std::move(o));
      if (on_outcome) on_outcome(out.back(), out.size(), expected_total);
      // Resume the case after the step that crashed (each resume skips further, so it ends);
      // a crash outside any step moves on to the next case.
      if (last_step_no > (resuming ? skip : 0)) {
        next = static_cast<size_t>(running);
        skip = last_step_no;
      } else {
        next = static_cast<size_t>(running) + 1;
        skip = 0;
      }
      continue;
    } else if (!clean) {  // after the last case: in shutdown or unload
      Outcome o;
      o.op = "(plugin)";
      o.name = "shutdown and unload after the last case";
      o.family = options.family_glob;
      o.status = Status::crash;
      o.message = "the plugin ended the process after its cases ran: " + ended;
      out.push_back(std::move(o));
      if (on_outcome) on_outcome(out.back(), out.size(), expected_total);
      break;
    }
    // A child that exited cleanly ran everything from `next` on.
    if (clean) break;
    skip = 0;
  }
  return out;
}

}  // namespace ferrum::conformance
