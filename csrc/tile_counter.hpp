// Multiplicity of every (row block, column block) tile: an open-addressing hash map whose size is
// proportional to the number of non-empty tiles, never to num_blocks^2, so the refinement scales to
// 10^7 nodes (1.6e5 blocks of 64: a dense table would need 2.4e10 entries).
//
// Key and count share one 16-byte slot, so a probe touches one cache line, and the table is sized
// from the real tile count (`add` of each tile's initial multiplicity), not from the edge count:
// at 1M nodes, k = 16, that is ~2.7e5 tiles in 8 MB instead of a 200 MB table sized for 4e6,
// and every lookup of the local search is a random access into it.
#pragma once

#include <cstdint>
#include <vector>

namespace graphattn {

class TileCounter {
public:
    explicit TileCounter(size_t expected_tiles) { rebuild(capacity_for(expected_tiles)); }

    static uint64_t key(int64_t row_block, int64_t col_block) {
        return (static_cast<uint64_t>(row_block) << 32) | static_cast<uint64_t>(col_block);
    }

    // +1 edge on the tile; returns 1 if the tile just became non-empty.
    int increment(uint64_t k) {
        int32_t& c = slot(k);
        return c++ == 0 ? 1 : 0;
    }

    // -1 edge on the tile; returns 1 if the tile just became empty.
    int decrement(uint64_t k) {
        int32_t& c = slot(k);
        return --c == 0 ? 1 : 0;
    }

    // Edges on the tile (0 when it is absent); never inserts.
    int32_t count(uint64_t k) const {
        size_t j = mix(k) & mask_;
        while (slots_[j].key != kEmpty) {
            if (slots_[j].key == k) return slots_[j].count;
            j = (j + 1) & mask_;
        }
        return 0;
    }

    // Sets up a tile with `count` edges at once (initial filling).
    void add(uint64_t k, int32_t count) { slot(k) += count; }

private:
    static constexpr uint64_t kEmpty = ~uint64_t(0);
    struct Slot {
        uint64_t key;
        int32_t count;
    };
    std::vector<Slot> slots_;
    size_t mask_ = 0;
    size_t used_ = 0;

    static size_t capacity_for(size_t n) {
        size_t cap = 1024;
        while (cap < 2 * n + 16) cap <<= 1;
        return cap;
    }

    static uint64_t mix(uint64_t x) {  // splitmix64 finaliser
        x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ULL;
        x ^= x >> 27; x *= 0x94D049BB133111EBULL;
        return x ^ (x >> 31);
    }

    void rebuild(size_t cap) {
        std::vector<Slot> old(cap, Slot{kEmpty, 0});
        old.swap(slots_);
        mask_ = cap - 1;
        used_ = 0;
        for (const Slot& s : old) {
            if (s.key != kEmpty && s.count != 0) {  // empty tiles are dropped here
                size_t j = mix(s.key) & mask_;
                while (slots_[j].key != kEmpty) j = (j + 1) & mask_;
                slots_[j] = s;
                ++used_;
            }
        }
    }

    int32_t& slot(uint64_t k) {
        size_t j = mix(k) & mask_;
        while (slots_[j].key != kEmpty) {
            if (slots_[j].key == k) return slots_[j].count;
            j = (j + 1) & mask_;
        }
        if (2 * (used_ + 1) > slots_.size()) {  // keep the load under 1/2 (zero-count slots included)
            size_t live = 0;
            for (const Slot& s : slots_) live += (s.key != kEmpty && s.count != 0);
            rebuild(capacity_for(live + 1));
            return slot(k);
        }
        slots_[j] = Slot{k, 0};
        ++used_;
        return slots_[j].count;
    }
};

}  // namespace graphattn
