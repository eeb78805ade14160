// Greedy decoding of a GGUF model by llama.cpp itself, from token ids: the independent reference for checking
// that ActorRing reads a GGUF architecture as llama.cpp does (names, norms, attention scale, windows, RoPE).
// Prints one JSON line: {"ids":[...],"top":[[id,logit],...]} (the greedy continuation, then the five largest
// logits after the prompt).
//
//   g++ -O2 -std=c++17 docs/bench/llamacpp_greedy.cpp -I$LLAMA/include -I$LLAMA/ggml/include \
//       $LLAMA/build/src/libllama.a $LLAMA/build/ggml/src/libggml.a $LLAMA/build/ggml/src/libggml-cpu.a \
//       $LLAMA/build/ggml/src/libggml-base.a -fopenmp -lpthread -o llamacpp_greedy
//   ./llamacpp_greedy MODEL.gguf N_TOKENS ID,ID,...
//   ./llamacpp_greedy MODEL.gguf tokenize < lines      # each stdin line's text (\n and \\ escaped) to ids,
//                                                      # as a chat prompt is tokenized (special tokens parsed,
//                                                      # no BOS added); a vocabulary-only file is enough
#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

static void quiet(ggml_log_level, const char *, void *) {}

static int tokenize(const char * path) {
    llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    llama_model * model = llama_model_load_from_file(path, mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", path); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    char line[1 << 16];
    std::vector<llama_token> ids(1 << 16);
    while (fgets(line, sizeof line, stdin)) {
        std::string text;
        for (char * c = line; *c && *c != '\n'; c++) {
            if (*c == '\\' && c[1] == 'n') { text += '\n'; c++; }
            else if (*c == '\\' && c[1] == '\\') { text += '\\'; c++; }
            else text += *c;
        }
        int n = llama_tokenize(vocab, text.c_str(), (int32_t)text.size(), ids.data(), (int32_t)ids.size(), false, true);
        printf("[");
        for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        printf("]\n");
    }
    llama_model_free(model);
    return 0;
}

int main(int argc, char ** argv) {
    if (argc == 3 && std::string(argv[2]) == "tokenize") {
        if (!getenv("LLAMACPP_LOG")) llama_log_set(quiet, nullptr);
        return tokenize(argv[1]);
    }
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL.gguf N_TOKENS ID,ID,...\n", argv[0]);
        return 2;
    }
    std::vector<llama_token> prompt;
    std::stringstream ss(argv[3]);
    for (std::string id; std::getline(ss, id, ',');) prompt.push_back(std::atoi(id.c_str()));
    const int n = std::atoi(argv[2]);

    if (!getenv("LLAMACPP_LOG")) llama_log_set(quiet, nullptr); // LLAMACPP_LOG=1: llama.cpp's own load log
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)(prompt.size() + n + 8);
    cp.n_batch = cp.n_ctx;
    cp.n_threads = cp.n_threads_batch = 1;
    // Keys and values in float32 and no flash attention: as exact as llama.cpp gets (its default f16 cache rounds).
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create a context\n"); return 1; }
    const int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    std::vector<llama_token> out;
    std::vector<std::pair<int, float>> top;
    llama_batch batch = llama_batch_get_one(prompt.data(), (int32_t)prompt.size());
    llama_token next = 0;
    for (int i = 0; i < n; i++) {
        if (llama_decode(ctx, batch) != 0) { fprintf(stderr, "decode failed at token %d\n", i); return 1; }
        const float * logits = llama_get_logits_ith(ctx, -1);
        next = (llama_token)(std::max_element(logits, logits + vocab) - logits);
        if (i == 0) {
            for (int v = 0; v < vocab; v++) top.emplace_back(v, logits[v]);
            std::partial_sort(top.begin(), top.begin() + 5, top.end(), [](auto & a, auto & b) { return a.second > b.second; });
            top.resize(5);
        }
        out.push_back(next);
        batch = llama_batch_get_one(&next, 1);
    }
    printf("{\"ids\":[");
    for (size_t i = 0; i < out.size(); i++) printf("%s%d", i ? "," : "", out[i]);
    printf("],\"top\":[");
    for (size_t i = 0; i < top.size(); i++) printf("%s[%d,%.6f]", i ? "," : "", top[i].first, top[i].second);
    printf("]}\n");
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
