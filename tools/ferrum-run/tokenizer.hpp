// ferrum-run: text in and out through SentencePiece (Debian's libsentencepiece-dev), for model
// directories that ship a tokenizer.model (Llama 2, Mistral and other SentencePiece models).
// Nothing else is tokenised: tokenizer.json (the Hugging Face tokenizers library has no Debian
// C++ package) and GGUF vocabularies would need a hand-written BPE, which ferrum-run does not
// have; those models take ids only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ferrum::run {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`, after the BOS id when the model adds one.
  virtual std::vector<uint32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<uint32_t>& ids) const = 0;
  virtual const std::string& path() const = 0;
};

// True when ferrum-run was built with SentencePiece.
bool have_sentencepiece();

// The tokenizer of a model directory: <dir>/tokenizer.model, with BOS (config.json's
// bos_token_id) prepended unless tokenizer_config.json sets add_bos_token to false. nullptr when
// the directory has no tokenizer.model; LoadError when it cannot be read, or when ferrum-run was
// built without SentencePiece.
std::unique_ptr<Tokenizer> open_tokenizer(const std::string& dir, int64_t bos_id);

}  // namespace ferrum::run
