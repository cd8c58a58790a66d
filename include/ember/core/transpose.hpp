#pragma once
/// \file
/// A fast out-of-place matrix transpose: Tensor::contiguous() uses it for a tensor stored as
/// a transposed matrix (a layout some convolutions leave their output in), and the
/// convolutions that use such a layout reach and leave it by one.
#include <Eigen/Core>

#include "ember/core/shape.hpp"

namespace ember::detail {

// dst[j·dst_ld + i] = src[i·src_ld + j] (+ add[i] when add is not null) for i < rows and
// j < cols: square tiles of one SIMD register per row, transposed in registers by Eigen's
// ptranspose, and the edges element by element (element by element throughout, it is
// several times slower).
// Eigen's packet types carry alignment attributes that GCC drops in template arguments.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif
template <class T>
void transpose_matrix(const T* src, Index src_ld, Index rows, Index cols, T* dst, Index dst_ld, const T* add = nullptr) {
    namespace ei = Eigen::internal;
    using Packet = typename ei::packet_traits<T>::type;
    constexpr Index L = ei::unpacket_traits<Packet>::size;
    Index rows_tiled = 0, cols_tiled = 0;
    if constexpr (L > 1) {
        rows_tiled = rows / L * L;
        cols_tiled = cols / L * L;
        for (Index j0 = 0; j0 < cols_tiled; j0 += L)
            for (Index i0 = 0; i0 < rows_tiled; i0 += L) {
                ei::PacketBlock<Packet, static_cast<int>(L)> tile;
                for (Index i = 0; i < L; ++i) tile.packet[i] = ei::ploadu<Packet>(src + (i0 + i) * src_ld + j0);
                ei::ptranspose(tile);
                const Packet a = add ? ei::ploadu<Packet>(add + i0) : ei::pset1<Packet>(T(0));
                for (Index j = 0; j < L; ++j)
                    ei::pstoreu(dst + (j0 + j) * dst_ld + i0, add ? ei::padd(tile.packet[j], a) : tile.packet[j]);
            }
    }
    auto element = [&](Index i, Index j) { dst[j * dst_ld + i] = add ? src[i * src_ld + j] + add[i] : src[i * src_ld + j]; };
    for (Index i = rows_tiled; i < rows; ++i)
        for (Index j = 0; j < cols; ++j) element(i, j);
    for (Index i = 0; i < rows_tiled; ++i)
        for (Index j = cols_tiled; j < cols; ++j) element(i, j);
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

}  // namespace ember::detail
