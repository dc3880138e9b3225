// A bounded least-recently-used cache, safe to share between threads.
//
// Values are immutable and handed out as shared_ptr, so an entry evicted while a caller
// still uses it lives until that caller is done. A miss builds the value outside the lock
// (building a oneDNN primitive takes milliseconds); if two threads miss on one key at
// once, the first to insert wins and the other's value is dropped.

#ifndef JCONV_CSRC_LRU_CACHE_H_
#define JCONV_CSRC_LRU_CACHE_H_

#include <cstddef>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace jconv {

template <typename Key, typename Value>
class LruCache {
 public:
  explicit LruCache(size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

  // The value for key, built by make() (returning std::shared_ptr<Value>) on a miss.
  template <typename Make>
  std::shared_ptr<Value> Get(const Key& key, Make make) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = index_.find(key);
      if (it != index_.end()) {
        order_.splice(order_.begin(), order_, it->second);
        return it->second->second;
      }
    }
    std::shared_ptr<Value> built = make();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = index_.find(key);
    if (it != index_.end()) return it->second->second;  // another thread won the race
    order_.emplace_front(key, built);
    index_[key] = order_.begin();
    Trim();
    return built;
  }

  size_t Size() {
    std::lock_guard<std::mutex> lock(mu_);
    return order_.size();
  }

  void SetCapacity(size_t capacity) {
    std::lock_guard<std::mutex> lock(mu_);
    capacity_ = capacity < 1 ? 1 : capacity;
    Trim();
  }

 private:
  using Entries = std::list<std::pair<Key, std::shared_ptr<Value>>>;

  void Trim() {
    while (order_.size() > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }

  std::mutex mu_;
  size_t capacity_;
  Entries order_;
  std::map<Key, typename Entries::iterator> index_;
};

}  // namespace jconv

#endif  // JCONV_CSRC_LRU_CACHE_H_
