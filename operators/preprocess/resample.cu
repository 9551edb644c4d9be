// Two separable passes for a whole batch. One block row (blockIdx.y) per image; threads stride
// over that image's pixels. meta[i * META + field] (int64) describes image i; `tables` holds
// every int32 weight table (start, count, weights) the batch needs.
#define META 24
#define M_SRC 0          // source pointer (uint8)
#define M_RS 1           // source strides in elements: row, column, channel (0 for gray)
#define M_CS 2
#define M_CHS 3
#define M_TEMP 4         // offset of this image's intermediate in `temp`
#define M_T_ROWS 5       // intermediate rows and columns (H x W x 3 uint8, contiguous)
#define M_T_COLS 6
#define M_P1_VERT 7      // 1 when the first pass resamples rows (vertical first)
#define M_P1_FIXED0 8    // first source line on the axis the first pass does not resample
#define M_P1_START 9
#define M_P1_COUNT 10
#define M_P1_W 11
#define M_P1_K 12
#define M_OUT_H 13
#define M_OUT_W 14
#define M_P2_TAP0 15     // the intermediate starts at this source line of the second axis
#define M_P2_START 16
#define M_P2_COUNT 17
#define M_P2_W 18
#define M_P2_K 19
#define M_OUT 20         // offset of this image's output (elements)
#define PRECISION_BITS 22

__device__ __forceinline__ unsigned char clip8(int acc) {
    int v = acc >> PRECISION_BITS;  // arithmetic shift: floor, like Pillow's lookup table
    return (unsigned char)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Fixed-point dot product of `count` taps along one axis, three channels, Pillow's rounding.
__device__ __forceinline__ void taps3(const unsigned char* base, long long tap_stride, long long chs,
                                      const int* w, int count, unsigned char* v) {
    int a0 = 1 << (PRECISION_BITS - 1), a1 = a0, a2 = a0;
    for (int t = 0; t < count; ++t) {
        const unsigned char* px = base + t * tap_stride;
        const int k = w[t];
        a0 += (int)px[0] * k;
        a1 += (int)px[chs] * k;
        a2 += (int)px[2 * chs] * k;
    }
    v[0] = clip8(a0);
    v[1] = clip8(a1);
    v[2] = clip8(a2);
}

extern "C" __global__ void resample_first_pass(const long long* meta, const int* tables,
                                               unsigned char* temp) {
    const long long* m = meta + (long long)blockIdx.y * META;
    const unsigned char* src = (const unsigned char*)m[M_SRC];
    const long long rs = m[M_RS], cs = m[M_CS], chs = m[M_CHS];
    const long long rows = m[M_T_ROWS], cols = m[M_T_COLS], fixed0 = m[M_P1_FIXED0], ksize = m[M_P1_K];
    const bool vertical = m[M_P1_VERT] != 0;
    const int* start = tables + m[M_P1_START];
    const int* count = tables + m[M_P1_COUNT];
    const int* weights = tables + m[M_P1_W];
    unsigned char* dst = temp + m[M_TEMP];
    const long long total = rows * cols;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < total;
         p += (long long)gridDim.x * blockDim.x) {
        const long long i = p / cols, j = p - i * cols;
        const long long a = vertical ? i : j;               // index along the resampled axis
        const long long fixed = (vertical ? j : i) + fixed0;  // source line on the other axis
        const long long tap_stride = vertical ? rs : cs;
        const unsigned char* base = src + fixed * (vertical ? cs : rs) + (long long)start[a] * tap_stride;
        taps3(base, tap_stride, chs, weights + a * ksize, count[a], dst + p * 3);
    }
}

template <typename T>
__device__ __forceinline__ void second_pass(const long long* meta, const int* tables,
                                            const unsigned char* temp, T* out, const T* lut,
                                            bool planar) {
    const long long* m = meta + (long long)blockIdx.y * META;
    const long long t_cols = m[M_T_COLS], out_h = m[M_OUT_H], out_w = m[M_OUT_W];
    const long long tap0 = m[M_P2_TAP0], ksize = m[M_P2_K];
    const bool vertical = m[M_P1_VERT] == 0;  // the second pass is the other axis
    const int* start = tables + m[M_P2_START];
    const int* count = tables + m[M_P2_COUNT];
    const int* weights = tables + m[M_P2_W];
    const unsigned char* src = temp + m[M_TEMP];
    const long long rs = t_cols * 3;
    T* dst = out + m[M_OUT];
    const long long plane = out_h * out_w;
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < plane;
         p += (long long)gridDim.x * blockDim.x) {
        const long long y = p / out_w, x = p - y * out_w;
        const long long a = vertical ? y : x;
        const long long tap_stride = vertical ? rs : 3;
        const unsigned char* base =
            src + (vertical ? x * 3 : y * rs) + ((long long)start[a] - tap0) * tap_stride;
        unsigned char v[3];
        taps3(base, tap_stride, 1, weights + a * ksize, count[a], v);
        if (planar) {  // N x 3 x H x W through the per-channel normalisation table
            dst[p] = lut[v[0]];
            dst[plane + p] = lut[256 + v[1]];
            dst[2 * plane + p] = lut[512 + v[2]];
        } else {  // H x W x 3 uint8 (thumbnails)
            dst[p * 3] = (T)v[0];
            dst[p * 3 + 1] = (T)v[1];
            dst[p * 3 + 2] = (T)v[2];
        }
    }
}

extern "C" __global__ void resample_second_pass_f32(const long long* meta, const int* tables,
                                                    const unsigned char* temp, float* out, const float* lut) {
    second_pass<float>(meta, tables, temp, out, lut, true);
}

// float16 output: the table already holds float16 bit patterns, so copying them is exact.
extern "C" __global__ void resample_second_pass_f16(const long long* meta, const int* tables,
                                                    const unsigned char* temp, unsigned short* out,
                                                    const unsigned short* lut) {
    second_pass<unsigned short>(meta, tables, temp, out, lut, true);
}

extern "C" __global__ void resample_second_pass_u8(const long long* meta, const int* tables,
                                                   const unsigned char* temp, unsigned char* out) {
    second_pass<unsigned char>(meta, tables, temp, out, (const unsigned char*)0, false);
}
