// Approximate minimum degree (Amestoy, Davis & Duff, 1996), on the quotient graph.
//
// Eliminated nodes become "elements": the clique their elimination creates is stored once as the
// element's variable list instead of as fill edges, so memory stays O(E). Each step takes a node
// of minimum approximate degree, merges the elements around it into one new element (absorbing
// them), prunes the variable lists it covers, and updates its variables' degrees with AMD's bound
//   d_i = min(remaining - 1, d_i + |L_p \ i|, |A_i \ i| + |L_p \ i| + sum_e |L_e \ L_p|).
// Elements whose variables all lie in the new element are absorbed too (aggressive absorption).
// Supervariable detection and mass elimination are left out; when the remaining variables form a
// single clique they are emitted at once, which covers the dense tail where that matters most.
#include "min_degree.hpp"

#include <algorithm>

namespace graphattn {
namespace {

// Doubly linked lists of variables per degree, to pop a minimum-degree variable in O(1) amortised.
class DegreeBuckets {
public:
    explicit DegreeBuckets(int64_t n) : head_(n + 1, -1), next_(n, -1), prev_(n, -1), degree_(n, 0) {}

    void insert(int64_t v, int64_t d) {
        degree_[v] = d;
        next_[v] = head_[d];
        prev_[v] = -1;
        if (head_[d] >= 0) prev_[head_[d]] = v;
        head_[d] = v;
        if (d < min_) min_ = d;
    }

    void remove(int64_t v) {
        const int64_t d = degree_[v];
        if (prev_[v] >= 0) next_[prev_[v]] = next_[v];
        else head_[d] = next_[v];
        if (next_[v] >= 0) prev_[next_[v]] = prev_[v];
    }

    int64_t pop_min() {
        while (head_[min_] < 0) ++min_;
        const int64_t v = head_[min_];
        remove(v);
        return v;
    }

    int64_t degree(int64_t v) const { return degree_[v]; }
    int64_t min_degree() {
        while (min_ + 1 < static_cast<int64_t>(head_.size()) && head_[min_] < 0) ++min_;
        return min_;
    }

private:
    std::vector<int64_t> head_, next_, prev_, degree_;
    int64_t min_ = 0;
};

}  // namespace

std::vector<int64_t> min_degree(const int64_t* ptr, const int64_t* nbrs, int64_t n) {
    std::vector<std::vector<int64_t>> vars(n), elems(n), element_vars(n);
    std::vector<char> eliminated(n, 0), absorbed(n, 0);
    std::vector<int64_t> mark(n, -1), w(n, 0), w_mark(n, -1);
    DegreeBuckets buckets(n);
    for (int64_t v = 0; v < n; ++v) {
        vars[v].assign(nbrs + ptr[v], nbrs + ptr[v + 1]);
        buckets.insert(v, static_cast<int64_t>(vars[v].size()));
    }
    std::vector<int64_t> order;
    order.reserve(n);
    int64_t remaining = n;
    for (int64_t step = 0; remaining > 0; ++step) {
        if (buckets.min_degree() >= remaining - 1) {
            // Every remaining variable is adjacent to every other: any order is a minimum one.
            for (int64_t v = 0; v < n; ++v) if (!eliminated[v]) order.push_back(v);
            break;
        }
        const int64_t p = buckets.pop_min();
        eliminated[p] = 1;
        --remaining;
        order.push_back(p);

        // L_p = (A_p ∪ union of L_e over e in E_p) minus p, all live variables.
        std::vector<int64_t>& lp = element_vars[p];
        mark[p] = step;
        for (int64_t u : vars[p]) if (!eliminated[u] && mark[u] != step) { mark[u] = step; lp.push_back(u); }
        for (int64_t e : elems[p]) {
            if (absorbed[e]) continue;
            for (int64_t u : element_vars[e]) if (!eliminated[u] && mark[u] != step) { mark[u] = step; lp.push_back(u); }
            absorbed[e] = 1;
            std::vector<int64_t>().swap(element_vars[e]);
        }
        std::vector<int64_t>().swap(vars[p]);
        std::vector<int64_t>().swap(elems[p]);
        const int64_t lp_size = static_cast<int64_t>(lp.size());

        // Prune: inside L_p, element p covers the variable–variable edges; drop absorbed elements.
        for (int64_t i : lp) {
            buckets.remove(i);
            auto& a = vars[i];
            a.erase(std::remove_if(a.begin(), a.end(), [&](int64_t u) { return eliminated[u] || mark[u] == step; }), a.end());
            auto& ei = elems[i];
            ei.erase(std::remove_if(ei.begin(), ei.end(), [&](int64_t e) { return absorbed[e]; }), ei.end());
        }
        // w[e] = |L_e \ L_p| for every element next to L_p.
        for (int64_t i : lp) {
            for (int64_t e : elems[i]) {
                if (w_mark[e] != step) { w_mark[e] = step; w[e] = static_cast<int64_t>(element_vars[e].size()); }
                --w[e];
            }
        }
        for (int64_t i : lp) {
            auto& ei = elems[i];
            int64_t external = 0;
            size_t keep = 0;
            for (int64_t e : ei) {
                if (w[e] == 0) {  // L_e ⊆ L_p: e adds nothing beyond p (aggressive absorption)
                    if (!absorbed[e]) { absorbed[e] = 1; std::vector<int64_t>().swap(element_vars[e]); }
                    continue;
                }
                if (absorbed[e]) continue;
                external += w[e];
                ei[keep++] = e;
            }
            ei.resize(keep);
            ei.push_back(p);
            const int64_t bound = static_cast<int64_t>(vars[i].size()) + (lp_size - 1) + external;
            const int64_t d = std::min({remaining - 1, buckets.degree(i) + lp_size - 1, bound});
            buckets.insert(i, std::max<int64_t>(d, 0));
        }
    }
    return order;
}

}  // namespace graphattn
