// Multiplicity of every (row block, column block) tile: an open-addressing hash map whose size is
// proportional to the number of non-empty tiles, never to num_blocks^2, so the refinement scales to
// 10^7 nodes (1.6e5 blocks of 64: a dense table would need 2.4e10 entries).
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

private:
    static constexpr uint64_t kEmpty = ~uint64_t(0);
    std::vector<uint64_t> keys_;
    std::vector<int32_t> counts_;
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
        std::vector<uint64_t> old_keys(cap, kEmpty);
        std::vector<int32_t> old_counts(cap, 0);
        old_keys.swap(keys_);
        old_counts.swap(counts_);
        mask_ = cap - 1;
        used_ = 0;
        for (size_t i = 0; i < old_keys.size(); ++i) {
            if (old_keys[i] != kEmpty && old_counts[i] != 0) {  // empty tiles are dropped here
                size_t j = mix(old_keys[i]) & mask_;
                while (keys_[j] != kEmpty) j = (j + 1) & mask_;
                keys_[j] = old_keys[i];
                counts_[j] = old_counts[i];
                ++used_;
            }
        }
    }

    int32_t& slot(uint64_t k) {
        size_t j = mix(k) & mask_;
        while (keys_[j] != kEmpty) {
            if (keys_[j] == k) return counts_[j];
            j = (j + 1) & mask_;
        }
        if (2 * (used_ + 1) > keys_.size()) {  // keep the load under 1/2 (zero-count slots included)
            size_t live = 0;
            for (size_t i = 0; i < keys_.size(); ++i) live += (keys_[i] != kEmpty && counts_[i] != 0);
            rebuild(capacity_for(live + 1));
            return slot(k);
        }
        keys_[j] = k;
        counts_[j] = 0;
        ++used_;
        return counts_[j];
    }
};

}  // namespace graphattn
