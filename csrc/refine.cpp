// Tile-count local search: exchanges nodes between blocks while the exact number of non-empty
// tiles goes down (or stays equal while fewer edges cross blocks). Every block keeps exactly its
// size, so a move is always paired with the reverse move of a partner: a swap.
//
// Each pass: every node names the block that holds most of its neighbours (its wish); nodes that
// wish a -> b are paired with nodes that wish b -> a, strongest wishes first, and each pair is
// tried with the exact change in tile count (applied edge by edge on the tile counter, undone if
// it does not pay). Passes repeat until one gains less than `min_pass_gain` or time runs out.
#include "refine.hpp"

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>

#include "tile_counter.hpp"

namespace graphattn {
namespace {

struct Csr {
    std::vector<int64_t> ptr, idx;
};

Csr group_edges(const int64_t* key, const int64_t* value, int64_t num_edges, int64_t num_nodes) {
    Csr csr;
    csr.ptr.assign(num_nodes + 1, 0);
    for (int64_t e = 0; e < num_edges; ++e) ++csr.ptr[key[e] + 1];
    for (int64_t v = 0; v < num_nodes; ++v) csr.ptr[v + 1] += csr.ptr[v];
    csr.idx.resize(num_edges);
    std::vector<int64_t> fill(csr.ptr.begin(), csr.ptr.end() - 1);
    for (int64_t e = 0; e < num_edges; ++e) csr.idx[fill[key[e]]++] = value[e];
    return csr;
}

class BlockSearch {
public:
    using Clock = std::chrono::steady_clock;

    BlockSearch(const int64_t* src, const int64_t* dst, int64_t num_edges, int64_t num_nodes,
                int64_t* perm, int64_t block_size, const int64_t* group)
        : in_(group_edges(dst, src, num_edges, num_nodes)),
          out_(group_edges(src, dst, num_edges, num_nodes)),
          perm_(perm), group_(group), num_nodes_(num_nodes), block_size_(block_size),
          position_(num_nodes), block_(num_nodes), counter_(static_cast<size_t>(num_edges / 4 + 16)) {
        for (int64_t p = 0; p < num_nodes; ++p) {
            position_[perm[p]] = p;
            block_[perm[p]] = p / block_size;
        }
        for (int64_t e = 0; e < num_edges; ++e) tiles_ += counter_.increment(TileCounter::key(block_[dst[e]], block_[src[e]]));
    }

    int64_t tiles() const { return tiles_; }

    // One pass of wish-matched swaps; returns the number of tiles it removed.
    int64_t pass(std::mt19937_64& rng, double deadline_s, const Clock::time_point& start) {
        const int64_t before = tiles_;
        std::vector<Wish> wishes;
        wishes.reserve(num_nodes_ / 2);
        std::vector<int64_t> scratch;
        for (int64_t v = 0; v < num_nodes_; ++v) {
            Wish w;
            if (wish_of(v, scratch, w)) {
                w.tie = rng();
                wishes.push_back(w);
            }
        }
        // Group by unordered block pair, then direction, strongest wish first.
        std::sort(wishes.begin(), wishes.end(), [](const Wish& x, const Wish& y) {
            const int64_t xl = std::min(x.from, x.to), yl = std::min(y.from, y.to);
            if (xl != yl) return xl < yl;
            const int64_t xh = std::max(x.from, x.to), yh = std::max(y.from, y.to);
            if (xh != yh) return xh < yh;
            if (x.from != y.from) return x.from < y.from;
            if (x.score != y.score) return x.score > y.score;
            return x.tie < y.tie;
        });
        size_t i = 0;
        int64_t trials = 0;
        while (i < wishes.size()) {
            size_t j = i;
            while (j < wishes.size() && wishes[j].from == wishes[i].from && wishes[j].to == wishes[i].to) ++j;
            size_t k = j;
            while (k < wishes.size() && wishes[k].from == wishes[i].to && wishes[k].to == wishes[i].from) ++k;
            // wishes[i:j) go a -> b, wishes[j:k) go b -> a
            for (size_t x = i, y = j; x < j && y < k; ++x, ++y) {
                try_swap(wishes[x].node, wishes[y].node);
                if ((++trials & 4095) == 0 && seconds_since(start) > deadline_s) return before - tiles_;
            }
            i = k;
        }
        return before - tiles_;
    }

    static double seconds_since(const Clock::time_point& t) {
        return std::chrono::duration<double>(Clock::now() - t).count();
    }

private:
    struct Wish {
        int64_t node, from, to, score;
        uint64_t tie;
    };

    Csr in_, out_;
    int64_t* perm_;
    const int64_t* group_;
    int64_t num_nodes_, block_size_;
    std::vector<int64_t> position_, block_;
    TileCounter counter_;
    int64_t tiles_ = 0;

    // The block holding most of v's neighbours (edges in either direction), if it is not v's own
    // block and holds at least as many as v's own block.
    bool wish_of(int64_t v, std::vector<int64_t>& scratch, Wish& wish) const {
        scratch.clear();
        for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) if (in_.idx[e] != v) scratch.push_back(block_[in_.idx[e]]);
        for (int64_t e = out_.ptr[v]; e < out_.ptr[v + 1]; ++e) if (out_.idx[e] != v) scratch.push_back(block_[out_.idx[e]]);
        if (scratch.empty()) return false;
        std::sort(scratch.begin(), scratch.end());
        const int64_t own = block_[v];
        int64_t own_count = 0, best = -1, best_count = 0;
        for (size_t s = 0; s < scratch.size();) {
            size_t t = s;
            while (t < scratch.size() && scratch[t] == scratch[s]) ++t;
            const int64_t count = static_cast<int64_t>(t - s);
            if (scratch[s] == own) own_count = count;
            else if (count > best_count) { best = scratch[s]; best_count = count; }
            s = t;
        }
        if (best < 0 || best_count < own_count) return false;
        wish = Wish{v, own, best, best_count - own_count, 0};
        return true;
    }

    // Moves v to block `to`, updating the tile counter edge by edge. Returns the exact change in
    // tiles; `cut_change` accumulates the change in block-crossing edges (the tie-breaker).
    int64_t move(int64_t v, int64_t to, int64_t& cut_change) {
        const int64_t from = block_[v];
        int64_t delta = 0;
        for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) {
            const int64_t u = in_.idx[e];
            if (u == v) {  // a self-loop moves along both of its ends
                delta -= counter_.decrement(TileCounter::key(from, from));
                delta += counter_.increment(TileCounter::key(to, to));
                continue;
            }
            const int64_t bu = block_[u];
            delta -= counter_.decrement(TileCounter::key(from, bu));
            delta += counter_.increment(TileCounter::key(to, bu));
            cut_change += (bu != to) - (bu != from);
        }
        for (int64_t e = out_.ptr[v]; e < out_.ptr[v + 1]; ++e) {
            const int64_t w = out_.idx[e];
            if (w == v) continue;
            const int64_t bw = block_[w];
            delta -= counter_.decrement(TileCounter::key(bw, from));
            delta += counter_.increment(TileCounter::key(bw, to));
            cut_change += (bw != to) - (bw != from);
        }
        block_[v] = to;
        return delta;
    }

    void try_swap(int64_t v, int64_t w) {
        const int64_t a = block_[v], b = block_[w];
        if (a == b || (group_ && group_[v] != group_[w])) return;
        int64_t cut_change = 0;
        const int64_t delta = move(v, b, cut_change) + move(w, a, cut_change);
        if (delta < 0 || (delta == 0 && cut_change < 0)) {
            tiles_ += delta;
            std::swap(perm_[position_[v]], perm_[position_[w]]);
            std::swap(position_[v], position_[w]);
            return;
        }
        int64_t ignored = 0;
        move(w, b, ignored);
        move(v, a, ignored);
    }
};

}  // namespace

RefineResult refine_blocks(const int64_t* src, const int64_t* dst, int64_t num_edges, int64_t num_nodes,
                           int64_t* perm, int64_t block_size, const int64_t* group, uint64_t seed,
                           double time_budget_s, int64_t max_passes, double min_pass_gain) {
    const auto start = BlockSearch::Clock::now();
    BlockSearch search(src, dst, num_edges, num_nodes, perm, block_size, group);
    RefineResult result;
    result.tiles_before = search.tiles();
    std::mt19937_64 rng(seed);
    for (int64_t p = 0; p < max_passes; ++p) {
        if (BlockSearch::seconds_since(start) > time_budget_s) break;
        const int64_t before = search.tiles();
        const int64_t gained = search.pass(rng, time_budget_s, start);
        ++result.passes;
        if (gained <= 0 || static_cast<double>(gained) < min_pass_gain * static_cast<double>(before)) break;
    }
    result.tiles_after = search.tiles();
    result.seconds = BlockSearch::seconds_since(start);
    return result;
}

}  // namespace graphattn
