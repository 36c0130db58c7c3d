/* Writes the JPEG seeds of fuzz/corpus/fuzz_image through stb_image_write
 * (Debian's libstb-dev): 8x6 gray and RGB baselines at two qualities (4:4:4
 * above 90, 4:2:0 below). Compiled and run by fuzz/make_corpus.py:
 *   cc fuzz/make_jpeg_seeds.c -o make_jpeg_seeds -lm && ./make_jpeg_seeds OUTDIR */
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>

#include <stdio.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  enum { W = 8, H = 6 };
  unsigned char rgb[W * H * 3], gray[W * H];
  for (int y = 0; y < H; ++y) {
    for (int x = 0; x < W; ++x) {
      gray[y * W + x] = (unsigned char)(x * 32 + y * 8);
      for (int c = 0; c < 3; ++c) rgb[(y * W + x) * 3 + c] = (unsigned char)((x * 40 + y * 20 + c * 85) & 255);
    }
  }
  char path[4096];
  int ok = 1;
  snprintf(path, sizeof path, "%s/jpeg_gray_q95.jpg", argv[1]);
  ok &= stbi_write_jpg(path, W, H, 1, gray, 95);
  snprintf(path, sizeof path, "%s/jpeg_rgb_q95.jpg", argv[1]);
  ok &= stbi_write_jpg(path, W, H, 3, rgb, 95);
  snprintf(path, sizeof path, "%s/jpeg_rgb_q50.jpg", argv[1]);
  ok &= stbi_write_jpg(path, W, H, 3, rgb, 50);
  return ok ? 0 : 1;
}
