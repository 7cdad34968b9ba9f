// Tile-count local search: exchanges nodes between blocks while the exact number of non-empty
// tiles goes down (or stays equal while fewer edges cross blocks). Every block keeps exactly its
// size, so a move of v from block a to b is always paired with a move of a partner w from b to a.
//
// Moves are applied edge by edge on the tile counter, which keeps the tile count and the number
// of block-crossing edges exact at every step; a trial that does not pay is undone the same way.
// Two kinds of pass alternate:
// - wish matching (cheap, broad): every node names the block that holds most of its neighbours;
//   nodes wishing a -> b are paired with nodes wishing b -> a, strongest wishes first;
// - targeted (the one that removes tiles): a node whose departure empties a tile is moved to the
//   neighbouring block where it costs least, and the partner sent back is chosen among that
//   block's nodes by their attachment to a, then tried exactly.
// Passes repeat until one gains less than `min_pass_gain` of the tiles, or time runs out. Without
// `matching` a pass is the targeted sweep alone: per second the better half (one sweep from kd on
// a 1M-point volume: 0.76 s for -2.5 tiles per row, against 1.07 s for -2.8 with matching), but
// the search ends higher when run to its end (14.03 against 13.75 tiles per row there).
#include "refine.hpp"

#include <algorithm>
#include <chrono>
#include <random>

#include "tile_counter.hpp"

namespace graphattn {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(const Clock::time_point& t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Csr {
    std::vector<int64_t> ptr;
    std::vector<int32_t> idx;  // node ids (< 2^31, checked by the binding): half the memory traffic
};

// The in-edge CSR (by target) renumbered: row i is the row of node perm[i], its sources as
// internal ids. Rows are copied whole, so reads and writes stay sequential within each row.
Csr renumbered_rows(const int64_t* in_ptr, const int32_t* in_src, const int64_t* perm, int64_t num_nodes,
                    const std::vector<int32_t>& internal) {
    Csr csr;
    csr.ptr.assign(num_nodes + 1, 0);
    for (int64_t i = 0; i < num_nodes; ++i) csr.ptr[i + 1] = csr.ptr[i] + in_ptr[perm[i] + 1] - in_ptr[perm[i]];
    csr.idx.resize(csr.ptr[num_nodes]);
    for (int64_t i = 0; i < num_nodes; ++i) {
        int64_t k = csr.ptr[i];
        for (int64_t e = in_ptr[perm[i]]; e < in_ptr[perm[i] + 1]; ++e) csr.idx[k++] = internal[in_src[e]];
    }
    return csr;
}

// The same edges grouped by the other end. In internal ids an edge's ends are close, so both the
// count and the scatter stay near the row being read (a grouping by the caller's ids would
// scatter at random: ~3x slower at 16M edges).
Csr transpose(const Csr& csr, int64_t num_nodes) {
    Csr t;
    t.ptr.assign(num_nodes + 1, 0);
    for (int32_t u : csr.idx) ++t.ptr[u + 1];
    for (int64_t v = 0; v < num_nodes; ++v) t.ptr[v + 1] += t.ptr[v];
    t.idx.resize(csr.idx.size());
    std::vector<int64_t> fill(t.ptr.begin(), t.ptr.end() - 1);
    for (int64_t v = 0; v < num_nodes; ++v)
        for (int64_t e = csr.ptr[v]; e < csr.ptr[v + 1]; ++e) t.idx[fill[csr.idx[e]]++] = static_cast<int32_t>(v);
    return t;
}

class BlockSearch {
public:
    // Nodes are renumbered by their position in the starting order (internal id i = node perm[i]),
    // so the nodes of a block and of its neighbouring blocks have nearby ids: their edges, blocks
    // and positions sit close in memory, which is what the search's random accesses need at 10^6
    // nodes.
    BlockSearch(const int64_t* in_ptr, const int32_t* in_src, int64_t num_nodes,
                const int64_t* perm, int64_t block_size, int64_t offset, const int64_t* group)
        : original_(perm, perm + num_nodes), num_nodes_(num_nodes), block_size_(block_size),
          shift_(offset % block_size), order_(num_nodes), position_(num_nodes), block_(num_nodes), counter_(0) {
        std::vector<int32_t> internal(num_nodes);
        for (int64_t p = 0; p < num_nodes; ++p) internal[perm[p]] = static_cast<int32_t>(p);
        in_ = renumbered_rows(in_ptr, in_src, perm, num_nodes, internal);
        out_ = transpose(in_, num_nodes);
        if (group) {
            group_.resize(num_nodes);
            for (int64_t i = 0; i < num_nodes; ++i) group_[i] = group[original_[i]];
        }
        for (int64_t p = 0; p < num_nodes; ++p) {
            order_[p] = static_cast<int32_t>(p);
            position_[p] = p;
            block_[p] = static_cast<int32_t>((p + shift_) / block_size);
        }
        // Initial tiles row by row (a block's nodes are a run of ids), each with its multiplicity,
        // so the hash map is filled once per tile instead of once per edge and sized to fit.
        const int64_t num_blocks = num_nodes ? (num_nodes - 1 + shift_) / block_size + 1 : 0;
        std::vector<int32_t> stamp(num_blocks, -1), count(num_blocks, 0), cols;
        std::vector<std::pair<uint64_t, int32_t>> tiles;
        for (int64_t r = 0; r < num_blocks; ++r) {
            cols.clear();
            for (int64_t v = first_position(r); v < end_position(r); ++v) {
                for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) {
                    const int32_t c = block_[in_.idx[e]];
                    if (stamp[c] != r) {
                        stamp[c] = static_cast<int32_t>(r);
                        count[c] = 0;
                        cols.push_back(c);
                    }
                    ++count[c];
                    cut_ += c != r;
                }
            }
            for (int32_t c : cols) tiles.emplace_back(TileCounter::key(r, c), count[c]);
        }
        block_stamp_.assign(num_blocks, -1);
        block_slot_.assign(num_blocks, 0);
        memo_.resize(num_blocks);
        for (int side = 0; side < 2; ++side) { tally_stamp_[side].assign(num_blocks, -1); tally_[side].assign(num_blocks, 0); }
        counter_ = TileCounter(tiles.size());
        for (const auto& [k, c] : tiles) counter_.add(k, c);
        tiles_ = static_cast<int64_t>(tiles.size());
    }

    // The current order in the caller's node ids.
    void write_order(int64_t* perm) const {
        for (int64_t p = 0; p < num_nodes_; ++p) perm[p] = original_[order_[p]];
    }

    int64_t tiles() const { return tiles_; }

    int64_t matching_pass(std::mt19937_64& rng, double deadline_s, const Clock::time_point& start) {
        const int64_t before = tiles_;
        std::vector<Wish> wishes;
        wishes.reserve(num_nodes_ / 2);
        for (int64_t v = 0; v < num_nodes_; ++v) {
            Wish w;
            if (wish_of(v, w)) {
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

    int64_t targeted_pass(double deadline_s, const Clock::time_point& start) {
        const int64_t before = tiles_;
        // Block by block, in the order's own sequence: a block's nodes share neighbours, so their
        // edges, blocks and tiles stay in cache (1.5x faster than a shuffled visit at 1M nodes,
        // the same gain per pass on the benchmark clouds).
        const std::vector<int32_t> visit(order_);
        int64_t trials = 0;
        for (int64_t v : visit) {
            try_targeted(v);
            if ((++trials & 1023) == 0 && seconds_since(start) > deadline_s) break;
        }
        return before - tiles_;
    }

private:
    struct Wish {
        int64_t node, from, to, score;
        uint64_t tie;
    };

    static constexpr int kTargets = 6;   // neighbouring blocks tried for a node that empties a tile
    static constexpr int kPartners = 8;  // partners tried exactly for the best of them

    Csr in_, out_;
    std::vector<int64_t> original_;  // the caller's id of each internal node
    std::vector<int64_t> group_;     // graph of each internal node (empty: one graph)
    int64_t num_nodes_, block_size_;
    int64_t shift_;  // offset % block_size: position p lies in block (p + shift_) / block_size

    int64_t first_position(int64_t b) const { return std::max<int64_t>(0, b * block_size_ - shift_); }
    int64_t end_position(int64_t b) const { return std::min(num_nodes_, (b + 1) * block_size_ - shift_); }
    std::vector<int32_t> order_;      // internal node at each position
    std::vector<int64_t> position_;
    std::vector<int32_t> block_;  // int32: the most read array of the search
    TileCounter counter_;
    int64_t tiles_ = 0, cut_ = 0;

    // Neighbour blocks of v (edges in either direction, self-loops left out) with their counts,
    // most first (ties: lower block first), into `out` as (block, count) pairs. Counted with a
    // stamp per block and ordered by insertion sort: a node has only a handful of neighbour blocks.
    void neighbour_blocks(int64_t v, std::vector<std::pair<int64_t, int64_t>>& out) {
        ++epoch_;
        out.clear();
        auto visit = [&](int64_t x) {
            const int32_t b = block_[x];
            if (block_stamp_[b] != epoch_) {
                block_stamp_[b] = epoch_;
                block_slot_[b] = static_cast<int32_t>(out.size());
                out.emplace_back(b, 0);
            }
            ++out[block_slot_[b]].second;
        };
        for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) if (in_.idx[e] != v) visit(in_.idx[e]);
        for (int64_t e = out_.ptr[v]; e < out_.ptr[v + 1]; ++e) if (out_.idx[e] != v) visit(out_.idx[e]);
        for (size_t k = 1; k < out.size(); ++k) {
            const auto item = out[k];
            size_t m = k;
            while (m > 0 && (out[m - 1].second < item.second ||
                             (out[m - 1].second == item.second && out[m - 1].first > item.first))) {
                out[m] = out[m - 1];
                --m;
            }
            out[m] = item;
        }
    }
    std::vector<int64_t> block_stamp_;
    std::vector<int32_t> block_slot_;
    int64_t epoch_ = 0;

    // Edges of v to nodes in block b minus edges to nodes in block c.
    int64_t attachment(int64_t v, int64_t b, int64_t c) const {
        int64_t score = 0;
        for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) {
            const int64_t bu = block_[in_.idx[e]];
            score += (bu == b) - (bu == c);
        }
        for (int64_t e = out_.ptr[v]; e < out_.ptr[v + 1]; ++e) {
            const int64_t bw = block_[out_.idx[e]];
            score += (bw == b) - (bw == c);
        }
        return score;
    }

    bool wish_of(int64_t v, Wish& wish) {
        std::vector<std::pair<int64_t, int64_t>>& blocks = pairs_;
        neighbour_blocks(v, blocks);
        const int64_t own = block_[v];
        int64_t own_count = 0, best = -1, best_count = 0;
        for (const auto& [b, count] : blocks) {
            if (b == own) own_count = count;
            else if (best < 0) { best = b; best_count = count; }
        }
        if (best < 0 || best_count < own_count) return false;
        wish = Wish{v, own, best, best_count - own_count, 0};
        return true;
    }
    std::vector<std::pair<int64_t, int64_t>> pairs_;

    // Takes v's edges off the tile counter (v belongs to no block meanwhile).
    void detach(int64_t v) {
        memo_.invalidate();
        const int64_t from = block_[v];
        for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) {
            const int64_t u = in_.idx[e];
            const int64_t bu = (u == v) ? from : block_[u];  // a self-loop leaves with both ends
            tiles_ -= counter_.decrement(TileCounter::key(from, bu));
            cut_ -= bu != from;
        }
        for (int64_t e = out_.ptr[v]; e < out_.ptr[v + 1]; ++e) {
            const int64_t w = out_.idx[e];
            if (w == v) continue;
            const int64_t bw = block_[w];
            tiles_ -= counter_.decrement(TileCounter::key(bw, from));
            cut_ -= bw != from;
        }
    }

    // Puts v's edges back on the counter with v in block `to`.
    void attach(int64_t v, int64_t to) {
        memo_.invalidate();
        block_[v] = static_cast<int32_t>(to);
        for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) {
            const int64_t u = in_.idx[e];
            const int64_t bu = block_[u];
            tiles_ += counter_.increment(TileCounter::key(to, bu));
            cut_ += bu != to;
        }
        for (int64_t e = out_.ptr[v]; e < out_.ptr[v + 1]; ++e) {
            const int64_t w = out_.idx[e];
            if (w == v) continue;
            const int64_t bw = block_[w];
            tiles_ += counter_.increment(TileCounter::key(bw, to));
            cut_ += bw != to;
        }
    }

    void move(int64_t v, int64_t to) {
        detach(v);
        attach(v, to);
    }

    bool pays(int64_t tiles_before, int64_t cut_before) const {
        return tiles_ < tiles_before || (tiles_ == tiles_before && cut_ < cut_before);
    }

    void commit_swap(int64_t v, int64_t w) {
        std::swap(order_[position_[v]], order_[position_[w]]);
        std::swap(position_[v], position_[w]);
    }

    bool same_group(int64_t v, int64_t w) const { return group_.empty() || group_[v] == group_[w]; }

    void try_swap(int64_t v, int64_t w) {
        const int64_t a = block_[v], b = block_[w];
        if (a == b || !same_group(v, w)) return;
        const int64_t tiles_before = tiles_, cut_before = cut_;
        move(v, b);
        move(w, a);
        if (pays(tiles_before, cut_before)) {
            commit_swap(v, w);
            return;
        }
        move(w, b);
        move(v, a);
    }

    // The tiles that attach(v, to) would create (v detached), read-only: one lookup per distinct
    // tile of v's edges instead of a write per edge to attach and another to detach again.
    int64_t tiles_added_by_attaching(int64_t v, int64_t to) {
        keys_.clear();
        for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) {
            const int64_t u = in_.idx[e];
            keys_.push_back(TileCounter::key(to, u == v ? to : block_[u]));
        }
        for (int64_t e = out_.ptr[v]; e < out_.ptr[v + 1]; ++e) {
            const int64_t w = out_.idx[e];
            if (w != v) keys_.push_back(TileCounter::key(block_[w], to));
        }
        std::sort(keys_.begin(), keys_.end());
        int64_t added = 0;
        for (size_t k = 0; k < keys_.size(); ++k)
            if ((k == 0 || keys_[k] != keys_[k - 1]) && counter_.count(keys_[k]) == 0) ++added;
        return added;
    }
    std::vector<uint64_t> keys_;

    // Whether taking v out of its block a would empty a tile: some tile of v's edges holds exactly
    // v's edges in it. Read-only and exact: v's edges are tallied per tile (in-edges from block c
    // on tile (a, c), out-edges to c on (c, a), both on the diagonal (a, a)), then each tally is
    // compared with the tile's count. At the start of a sweep from kd on a 1M-point volume only
    // 3.5% of the nodes empty a tile; a test that only compared counts with v's degree let 54%
    // through, each for a detach and re-attach (two hash writes per edge), most of the sweep.
    bool empties_a_tile(int64_t v) {
        const int64_t a = block_[v];
        ++tally_epoch_;
        auto tally = [&](int side, int64_t c) {
            if (tally_stamp_[side][c] != tally_epoch_) { tally_stamp_[side][c] = tally_epoch_; tally_[side][c] = 0; }
            ++tally_[side][c];
        };
        for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) {
            const int64_t u = in_.idx[e];
            tally(0, u == v ? a : block_[u]);  // a self-loop leaves with both ends: tile (a, a)
        }
        for (int64_t e = out_.ptr[v]; e < out_.ptr[v + 1]; ++e) {
            const int64_t w = out_.idx[e];
            if (w == v) continue;
            const int64_t c = block_[w];
            tally(c == a ? 0 : 1, c);
        }
        for (int64_t e = in_.ptr[v]; e < in_.ptr[v + 1]; ++e) {
            const int64_t u = in_.idx[e];
            const int64_t c = u == v ? a : block_[u];
            if (memo_.count(counter_, a, c, /*row=*/true) == tally_[0][c]) return true;
        }
        for (int64_t e = out_.ptr[v]; e < out_.ptr[v + 1]; ++e) {
            const int64_t w = out_.idx[e];
            if (w == v) continue;
            const int64_t c = block_[w];
            if (c == a ? memo_.count(counter_, a, a, true) == tally_[0][a]
                       : memo_.count(counter_, a, c, /*row=*/false) == tally_[1][c]) return true;
        }
        return false;
    }
    std::vector<int64_t> tally_stamp_[2];
    std::vector<int32_t> tally_[2];
    int64_t tally_epoch_ = 0;

    // The counts of block a's tiles, (a, c) and (r, a), looked up once and kept for the next nodes
    // of the sweep: it visits a block's nodes one after the other and most of them change nothing,
    // so they ask for the same ~30 tiles. Stamped per block and per change of the counter
    // (invalidate() in detach and attach), so a count is never stale. At 1M nodes this replaces
    // ~32 random hash lookups per node by array reads.
    class BlockTileMemo {
    public:
        void resize(int64_t num_blocks) {
            stamp_[0].assign(num_blocks, -1); stamp_[1].assign(num_blocks, -1);
            value_[0].assign(num_blocks, 0); value_[1].assign(num_blocks, 0);
        }
        void invalidate() { ++epoch_; }
        // Edges on tile (a, other) when row, (other, a) otherwise.
        int32_t count(const TileCounter& counter, int64_t a, int64_t other, bool row) {
            if (a != block_) { block_ = a; ++epoch_; }
            const int side = row ? 0 : 1;
            if (stamp_[side][other] != epoch_) {
                stamp_[side][other] = epoch_;
                value_[side][other] = counter.count(row ? TileCounter::key(a, other) : TileCounter::key(other, a));
            }
            return value_[side][other];
        }
    private:
        std::vector<int64_t> stamp_[2];
        std::vector<int32_t> value_[2];
        int64_t epoch_ = 0, block_ = -1;
    };
    BlockTileMemo memo_;

    void try_targeted(int64_t v) {
        if (!empties_a_tile(v)) return;
        const int64_t a = block_[v];
        const int64_t tiles_before = tiles_, cut_before = cut_;
        detach(v);
        if (tiles_ == tiles_before) {  // leaving a empties no tile: nothing to gain from v
            attach(v, a);
            return;
        }
        std::vector<std::pair<int64_t, int64_t>>& blocks = pairs_;
        block_[v] = static_cast<int32_t>(a);
        neighbour_blocks(v, blocks);
        int64_t best = -1, best_tiles = 0;
        int tried = 0;
        for (const auto& [b, count] : blocks) {
            if (b == a) continue;
            if (tried++ == kTargets) break;
            const int64_t tiles_there = tiles_ + tiles_added_by_attaching(v, b);
            if (best < 0 || tiles_there < best_tiles) { best = b; best_tiles = tiles_there; }
        }
        if (best < 0 || best_tiles > tiles_before) {  // even the best target adds tiles: no swap can pay
            attach(v, a);
            return;
        }
        attach(v, best);
        // Partners: the nodes of block `best` most attached to a (relative to `best`).
        int64_t candidates[kPartners];
        int64_t scores[kPartners];
        int found = 0;
        const int64_t lo = first_position(best), hi = end_position(best);
        for (int64_t p = lo; p < hi; ++p) {
            const int64_t w = order_[p];
            if (w == v || block_[w] != best || !same_group(v, w)) continue;
            const int64_t score = attachment(w, a, best);
            int slot = found < kPartners ? found++ : kPartners;
            while (slot > 0 && scores[slot - 1] < score) {
                if (slot < kPartners) { candidates[slot] = candidates[slot - 1]; scores[slot] = scores[slot - 1]; }
                --slot;
            }
            if (slot < kPartners) { candidates[slot] = w; scores[slot] = score; }
        }
        for (int c = 0; c < found; ++c) {
            const int64_t w = candidates[c];
            move(w, a);
            if (pays(tiles_before, cut_before)) {
                commit_swap(v, w);
                return;
            }
            move(w, best);
        }
        move(v, a);
    }
};

}  // namespace

RefineResult refine_blocks(const int64_t* in_ptr, const int32_t* in_src, int64_t num_nodes,
                           int64_t* perm, int64_t block_size, int64_t offset, const int64_t* group, uint64_t seed,
                           double time_budget_s, int64_t max_passes, double min_pass_gain, bool matching) {
    const auto start = Clock::now();
    BlockSearch search(in_ptr, in_src, num_nodes, perm, block_size, offset, group);
    RefineResult result;
    result.tiles_before = search.tiles();
    std::mt19937_64 rng(seed);
    for (int64_t p = 0; p < max_passes; ++p) {
        if (seconds_since(start) > time_budget_s) break;
        const int64_t before = search.tiles();
        if (matching) search.matching_pass(rng, time_budget_s, start);
        if (seconds_since(start) <= time_budget_s) search.targeted_pass(time_budget_s, start);
        ++result.passes;
        const int64_t gained = before - search.tiles();
        if (gained <= 0 || static_cast<double>(gained) < min_pass_gain * static_cast<double>(before)) break;
    }
    search.write_order(perm);
    result.tiles_after = search.tiles();
    result.seconds = seconds_since(start);
    return result;
}

}  // namespace graphattn
