// The two blocks of UniRepLKNet (spec 2.4, 2.5), training and deploy structure, over NHWC data.
//
// DilatedReparamBlock (LarK mixer), training: BN(DW_KxK(x)) + sum_b BN_b(DW_{k_b x k_b, dilation r_b}(x));
// deploy: one DW_KxK conv with bias. UniRepLKNetBlock:
//   x + DropPath(gamma * BN2(Linear2(GRN(GELU(Linear1(SE(BN(mixer(x)))))))))
// with the BNs, gamma and GRN's beta folded away in deploy mode (reparam.cpp).
#pragma once
#include "layers/basic.h"

namespace unirep {

class DilatedReparamBlock : public Module {
 public:
  DilatedReparamBlock(int64_t channels, int64_t kernel_size, bool deploy);
  Tensor forward(const Tensor& x);

  struct Branch {
    int64_t kernel, dilation;
    std::shared_ptr<Conv2d> conv;
    std::shared_ptr<BatchNorm2d> bn;
  };
  int64_t kernel_size;
  std::shared_ptr<Conv2d> lk_origin;
  std::shared_ptr<BatchNorm2d> origin_bn;  // training structure only
  std::vector<Branch> branches;            // training structure only
};

class UniRepLKNetBlock : public Module {
 public:
  UniRepLKNetBlock(int64_t dim, int64_t kernel_size, double drop_path_rate, double layer_scale_init_value,
                   bool deploy, bool with_cp);
  Tensor forward(const Tensor& x, Generator& gen);

  int64_t dim, kernel_size;
  bool deploy, with_cp;
  Tensor gamma;                                // layer scale [C]; training structure with ls > 0
  std::shared_ptr<DilatedReparamBlock> lark;   // dwconv when kernel_size >= 7
  std::shared_ptr<Conv2d> smak;                // dwconv when kernel_size is 3 or 5
  std::shared_ptr<BatchNorm2d> norm;           // training structure only
  std::shared_ptr<SEBlock> se;
  std::shared_ptr<Linear> pwconv1;             // "pwconv1.1"
  std::shared_ptr<GRN> grn;                    // "act.1"
  std::shared_ptr<Linear> pwconv2;             // "pwconv2.0"
  std::shared_ptr<BatchNorm2d> pwconv2_bn;     // "pwconv2.2", training structure only
  std::shared_ptr<DropPath> drop_path;         // rate > 0 only

 private:
  Tensor residual_branch(const Tensor& x);  // up to pwconv2's batch norm: no layer scale, no drop path
  Tensor output(const Tensor& x, Generator& gen);  // x + drop_path(gamma * residual_branch(x))
  Container pwconv1_seq_, act_seq_, pwconv2_seq_;
};

}  // namespace unirep
