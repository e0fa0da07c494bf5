#include "tokenizer.hpp"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#ifdef FERRUM_RUN_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

#include "load_error.hpp"

namespace ferrum::run {

#ifdef FERRUM_RUN_SENTENCEPIECE
namespace {

class SentencePieceTokenizer : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path, int64_t bos) : path_(path), bos_(bos) {
    const auto status = sp_.Load(path);
    if (!status.ok()) throw LoadError(path + ": cannot load the SentencePiece model: " + status.ToString());
  }
  std::vector<uint32_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    const auto status = sp_.Encode(text, &ids);
    if (!status.ok()) throw LoadError(path_ + ": cannot encode the prompt: " + status.ToString());
    std::vector<uint32_t> out;
    if (bos_ >= 0) out.push_back(static_cast<uint32_t>(bos_));
    for (int id : ids) out.push_back(static_cast<uint32_t>(id));
    return out;
  }
  std::string decode(const std::vector<uint32_t>& ids) const override {
    std::vector<int> v;
    for (uint32_t id : ids)
      if (id < static_cast<uint32_t>(sp_.GetPieceSize())) v.push_back(static_cast<int>(id));
    std::string text;
    const auto status = sp_.Decode(v, &text);
    if (!status.ok()) throw LoadError(path_ + ": cannot decode: " + status.ToString());
    return text;
  }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  int64_t bos_;
  sentencepiece::SentencePieceProcessor sp_;
};

}  // namespace
#endif

bool have_sentencepiece() {
#ifdef FERRUM_RUN_SENTENCEPIECE
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& dir, int64_t bos_id) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path model = fs::path(dir) / "tokenizer.model";
  if (!fs::is_directory(dir, ec) || !fs::is_regular_file(model, ec)) return nullptr;
  // transformers' Llama tokenizer adds BOS unless tokenizer_config.json says otherwise.
  bool add_bos = bos_id >= 0;
  std::ifstream in(fs::path(dir) / "tokenizer_config.json");
  if (in) {
    const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("add_bos_token") && j["add_bos_token"].is_boolean())
      add_bos = add_bos && j["add_bos_token"].get<bool>();
  }
#ifdef FERRUM_RUN_SENTENCEPIECE
  return std::make_unique<SentencePieceTokenizer>(model.string(), add_bos ? bos_id : -1);
#else
  (void)add_bos;
  throw LoadError(model.string() + ": this ferrum-run was built without SentencePiece (install "
                                   "libsentencepiece-dev and rebuild); use --prompt-ids");
#endif
}

}  // namespace ferrum::run
