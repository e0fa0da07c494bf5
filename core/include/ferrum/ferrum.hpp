// ferrum — the C++ facade over the plugin ABI. Include this one header.
//
//   auto backend = ferrum::Backend::load();          // or load("cpu"), load("/path/x.so")
//   auto ctx = backend.create_context();
//   auto a = ctx.from_slice(host_a);                 // std::span<const float>
//   ctx.gemm(a, b, out, m, n, k);                    // checked, then run by the plugin
//   std::vector<float> r = ctx.to_vec(out, m * n);
//
// Errors are ferrum::Error (error.hpp). Objects are move-only owners; each keeps its plugin
// loaded (docs/design.md §2.5, §3).
#pragma once

#include <ferrum/backend.hpp>
#include <ferrum/context.hpp>
#include <ferrum/error.hpp>
#include <ferrum/export.hpp>
#include <ferrum/handles.hpp>
#include <ferrum/loader.hpp>
#include <ferrum/op_gen.hpp>
#include <ferrum/rope.hpp>
#include <ferrum/types.hpp>
