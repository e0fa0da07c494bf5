// ferrum-run-check — runs ferrum-run on a tiny checkpoint and compares it with the reference
// written by tests/models/make_tiny.py (transformers in float64):
//
//   ferrum-run-check --run <ferrum-run> --model PATH [--ref FILE] --dump FILE --tol X [--greedy]
//                    [-- extra args]
//
// (FILE defaults to PATH/reference.json.) With --skip-without-gpu (before --), a run that fails
// because the backend's probe found no usable GPU exits 77 (CTest: skipped).
//   ferrum-run-check --run <ferrum-run> --model DIR --text-ref FILE [-- extra args]
//
// The second form checks the text path: `--prompt TEXT --max-new-tokens N --ignore-eos --json`
// must report the reference's prompt ids, greedy ids and decoded text.
//
// The first runs `<ferrum-run> --model DIR --prompt-ids ... (every reference request) --max-new-tokens N
// --ignore-eos --json --dump-logits FILE <extra args>` and fails unless it exits 0, every
// request's logits at its last prompt position are within relative L2 error X of the reference,
// and (with --greedy) every request generated exactly the reference's greedy tokens.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace {

using json = nlohmann::json;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "ferrum-run-check: %s\n", msg.c_str());
  return 1;
}

// --skip-without-gpu: a run whose backend was rejected by its probe for want of a GPU (the
// CUDA plugin's reasons) exits 77, which CTest reports as skipped; any other failure fails.
bool g_skip_without_gpu = false;
constexpr int kSkipped = 77;

bool is_probe_rejection(const std::string& err) {
  for (const char* r : {"no CUDA device", "no usable CUDA device", "CUDA driver too old"})
    if (err.find(r) != std::string::npos) return true;
  return false;
}

// Runs `cmd` through the shell; its stdout, or nullopt (with a message) when it did not exit 0.
// Its stderr is echoed; *skipped is set when --skip-without-gpu applies.
std::optional<std::string> run_command(std::string cmd, bool* skipped) {
  std::printf("%s\n", cmd.c_str());
  char err_path[] = "/tmp/ferrum-run-check-XXXXXX";
  const int fd = mkstemp(err_path);
  if (fd < 0) return std::nullopt;
  close(fd);
  cmd += " 2> " + quote(err_path);
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    std::remove(err_path);
    return std::nullopt;
  }
  std::string out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = pclose(p);
  std::string err;
  if (std::FILE* e = std::fopen(err_path, "r")) {
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, e)) > 0;) err.append(buf, n);
    std::fclose(e);
  }
  std::remove(err_path);
  std::fputs(err.c_str(), stderr);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (g_skip_without_gpu && is_probe_rejection(err)) {
      std::printf("SKIPPED: the backend's probe found no usable GPU\n");
      *skipped = true;
      return std::nullopt;
    }
    std::fprintf(stderr, "ferrum-run-check: ferrum-run did not exit 0 (status %d); stdout:\n%s\n", status, out.c_str());
    return std::nullopt;
  }
  return out;
}

int check_text(const std::string& run, const std::string& model, const std::string& ref_path,
               const std::vector<std::string>& extra) {
  std::ifstream rf(ref_path);
  const json ref = json::parse(rf, nullptr, false);
  if (ref.is_discarded() || !ref.contains("prompt")) return fail(ref_path + ": not a text reference file");
  std::string cmd = quote(run) + " --model " + quote(model) + " --prompt " + quote(ref["prompt"].get<std::string>()) +
                    " --max-new-tokens " + std::to_string(ref["max_new_tokens"].get<uint64_t>()) + " --ignore-eos --json";
  for (const std::string& e : extra) cmd += " " + quote(e);
  bool skipped = false;
  const auto out = run_command(cmd, &skipped);
  if (!out) return skipped ? kSkipped : 1;
  const json got = json::parse(*out, nullptr, false);
  if (got.is_discarded() || !got.contains("requests") || got["requests"].size() != 1)
    return fail("ferrum-run --json printed no request:\n" + *out);
  const json& r = got["requests"][0];
  int bad = 0;
  for (const char* key : {"prompt_ids", "generated", "text"}) {
    const json& want = ref[std::string(key) == "generated" ? "greedy" : key];
    const bool ok = r.contains(key) && r[key] == want;
    std::printf("%s: %s %s %s\n", key, r.contains(key) ? r[key].dump().c_str() : "(missing)", ok ? "=" : "!=",
                want.dump().c_str());
    bad += !ok;
  }
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string run, model, dump, ref_path, text_ref;
  double tol = -1;
  bool greedy = false;
  std::vector<std::string> extra;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      for (++i; i < argc; ++i) extra.emplace_back(argv[i]);
    } else if (a == "--greedy") {
      greedy = true;
    } else if (a == "--skip-without-gpu") {
      g_skip_without_gpu = true;
    } else if (i + 1 < argc && a == "--run") {
      run = argv[++i];
    } else if (i + 1 < argc && a == "--model") {
      model = argv[++i];
    } else if (i + 1 < argc && a == "--text-ref") {
      text_ref = argv[++i];
    } else if (i + 1 < argc && a == "--ref") {
      ref_path = argv[++i];
    } else if (i + 1 < argc && a == "--dump") {
      dump = argv[++i];
    } else if (i + 1 < argc && a == "--tol") {
      tol = std::stod(argv[++i]);
    } else {
      return fail("unknown argument " + a);
    }
  }
  if (!run.empty() && !model.empty() && !text_ref.empty()) return check_text(run, model, text_ref, extra);
  if (run.empty() || model.empty() || dump.empty() || !(tol > 0))
    return fail("usage: --run BIN --model DIR --dump FILE --tol X [--greedy] [--skip-without-gpu] [-- args]");
  if (ref_path.empty()) ref_path = model + "/reference.json";
  std::ifstream rf(ref_path);
  const json ref = json::parse(rf, nullptr, false);
  if (ref.is_discarded() || !ref.contains("requests")) return fail(ref_path + ": not a reference file");
  const auto& reqs = ref["requests"];

  std::string cmd = quote(run) + " --model " + quote(model);
  for (const json& r : reqs) {
    std::string ids;
    for (const json& t : r["prompt_ids"]) ids += (ids.empty() ? "" : ",") + std::to_string(t.get<uint32_t>());
    cmd += " --prompt-ids " + ids;
  }
  cmd += " --max-new-tokens " + std::to_string(ref["max_new_tokens"].get<uint64_t>()) +
         " --ignore-eos --json --dump-logits " + quote(dump);
  for (const std::string& e : extra) cmd += " " + quote(e);
  std::remove(dump.c_str());
  bool skipped = false;
  const auto ran = run_command(cmd, &skipped);
  if (!ran) return skipped ? kSkipped : 1;
  const std::string& out = *ran;
  const json got = json::parse(out, nullptr, false);
  std::ifstream df(dump);
  const json logits = json::parse(df, nullptr, false);
  if (got.is_discarded() || !got.contains("requests") || got["requests"].size() != reqs.size())
    return fail("ferrum-run --json printed no matching requests:\n" + out);
  if (logits.is_discarded() || !logits.contains("logits") || logits["logits"].size() != reqs.size())
    return fail(dump + ": no logits for every request");
  int bad = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto want = reqs[i]["logits"].get<std::vector<double>>();
    const auto have = logits["logits"][i].get<std::vector<double>>();
    if (want.size() != have.size()) return fail("request " + std::to_string(i + 1) + ": logits of another length");
    double num = 0, den = 0;
    for (size_t k = 0; k < want.size(); ++k) {
      num += (have[k] - want[k]) * (have[k] - want[k]);
      den += want[k] * want[k];
    }
    const double rel = std::sqrt(num / den);  // NaN fails the comparison below
    const auto gen = got["requests"][i]["generated"].get<std::vector<uint32_t>>();
    const auto ref_gen = reqs[i]["greedy"].get<std::vector<uint32_t>>();
    const bool logits_ok = rel <= tol, greedy_ok = !greedy || gen == ref_gen;
    std::printf("request %zu: logits rel-L2 %.3e (tolerance %.1e) %s; generated %s%s\n", i + 1, rel, tol,
                logits_ok ? "ok" : "FAIL", json(gen).dump().c_str(),
                greedy ? (greedy_ok ? " = reference" : (" != reference " + json(ref_gen).dump()).c_str()) : "");
    bad += !logits_ok || !greedy_ok;
  }
  return bad ? 1 : 0;
}
