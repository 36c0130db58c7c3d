// Sequential: children "0", "1", ... applied in order (torch.nn.Sequential,
// whose numeric child names torchvision's VGG "features.N.weight" use).
#pragma once

#include <memory>
#include <vector>

#include "layers/conv_bn.h"
#include "layers/module.h"

namespace crfseg::nn {

class Sequential : public Module {
 public:
  Sequential() : Module("Sequential") {}
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules) : Sequential() {
    for (auto& m : modules) push_back(std::move(m));
  }
  // Appends under the next index as its name.
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    register_module(std::to_string(size_), module);
    ++size_;
    return module;
  }
  int64_t size() const { return size_; }
  Module& operator[](int64_t i) const { return child(std::to_string(i)); }

  // A Conv2d followed by a BatchNorm2d runs as conv_bn (folded into one
  // convolution for inference, layers/conv_bn.h; the two modules otherwise).
  Tensor forward(const Tensor& x) override {
    Tensor y = x;
    const auto& children = named_children();
    for (size_t i = 0; i < children.size(); ++i) {
      auto* conv = dynamic_cast<Conv2d*>(children[i].second.get());
      auto* bn = i + 1 < children.size() ? dynamic_cast<BatchNorm2d*>(children[i + 1].second.get()) : nullptr;
      if (conv != nullptr && bn != nullptr) {
        y = conv_bn(*conv, *bn, y);
        ++i;
      } else {
        y = (*children[i].second)(y);
      }
    }
    return y;
  }

 private:
  int64_t size_ = 0;
};

}  // namespace crfseg::nn
