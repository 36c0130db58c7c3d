// Metrics CSV and SVG curves; see report.h.
#include "tools/crfseg/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "tensor/error.h"

namespace crfseg::app {

void create_output_dir(const std::string& dir, const char* op) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  CRFSEG_CHECK(!ec, IOError, op, ": cannot create the output folder ", dir, ": ", ec.message());
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    CRFSEG_CHECK(out.good(), IOError, "cannot create ", tmp, " (for ", path, ")");
    out << text;
    out.flush();
    CRFSEG_CHECK(out.good(), IOError, "writing ", tmp, " (for ", path, ") failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    CRFSEG_CHECK(false, IOError, "cannot rename ", tmp, " to ", path);
  }
}

MetricsLog::MetricsLog(std::string csv_path, std::vector<std::string> class_names)
    : csv_path_(std::move(csv_path)), class_names_(std::move(class_names)) {}

std::string MetricsLog::header(bool with_boundary) const {
  std::string h = "epoch,lr,seconds,train_loss,train_acc,train_miou,train_dice,val_loss,val_acc,val_miou,val_dice";
  if (with_boundary) h += ",val_boundary_miou";
  for (const std::string& n : class_names_) h += ",val_iou_" + n;
  return h;
}

void MetricsLog::load(int64_t last_epoch) {
  rows_.clear();
  std::ifstream in(csv_path_);
  if (!in) return;
  std::string line;
  const bool read = static_cast<bool>(std::getline(in, line));
  const bool old_form = read && line == header(false);  // written before val_boundary_miou
  CRFSEG_CHECK(read && (line == header() || old_form), IOError, "MetricsLog: ", csv_path_,
               " does not start with the expected header (", header(), ")");
  const size_t fixed = old_form ? 11 : 12;  // fields before the per-class IoUs
  int64_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    std::vector<double> v;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) v.push_back(std::strtod(cell.c_str(), nullptr));
    CRFSEG_CHECK(v.size() == fixed + class_names_.size(), IOError, "MetricsLog: ", csv_path_, " line ", line_no,
                 " has ", v.size(), " fields; expected ", fixed + class_names_.size());
    EpochRow r{static_cast<int64_t>(v[0]), v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10],
               old_form ? NAN : v[11], {}};
    r.val_iou.assign(v.begin() + static_cast<int64_t>(fixed), v.end());
    if (r.epoch <= last_epoch) rows_.push_back(r);
  }
}

void MetricsLog::append(const EpochRow& row) {
  rows_.push_back(row);
  std::ostringstream out;
  out << header() << '\n';
  char buf[64];
  for (const EpochRow& r : rows_) {
    out << r.epoch;
    for (double v : {r.lr, r.seconds, r.train_loss, r.train_acc, r.train_miou, r.train_dice, r.val_loss, r.val_acc,
                     r.val_miou, r.val_dice, r.val_boundary_miou}) {
      std::snprintf(buf, sizeof buf, ",%.6g", v);
      out << buf;
    }
    for (size_t c = 0; c < class_names_.size(); ++c) {
      std::snprintf(buf, sizeof buf, ",%.6g", c < r.val_iou.size() ? r.val_iou[c] : NAN);
      out << buf;
    }
    out << '\n';
  }
  write_file_atomically(csv_path_, out.str());
}

namespace {

// One panel: two series against the epoch, in a w x h box at (x0, y0).
void panel(std::ostringstream& svg, double x0, double y0, double w, double h, const std::string& title,
           const std::vector<double>& epochs, const std::vector<double>& a, const std::vector<double>& b,
           const char* a_name, const char* b_name) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto* s : {&a, &b}) {
    for (double v : *s) {
      if (std::isfinite(v)) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
  }
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) hi = lo + 1;
  const double e_max = std::max(1.0, epochs.empty() ? 1.0 : epochs.back());
  auto px = [&](double e) { return x0 + 40 + (w - 50) * (e / e_max); };
  auto py = [&](double v) { return y0 + h - 30 - (h - 50) * (v - lo) / (hi - lo); };
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='white' stroke='#888'/>\n"
                "<text x='%.1f' y='%.1f' font-size='13' text-anchor='middle'>%s</text>\n",
                x0, y0, w, h, x0 + w / 2, y0 + 15, title.c_str());
  svg << buf;
  std::snprintf(buf, sizeof buf,
                "<text x='%.1f' y='%.1f' font-size='10' text-anchor='end'>%.3g</text>\n"
                "<text x='%.1f' y='%.1f' font-size='10' text-anchor='end'>%.3g</text>\n"
                "<text x='%.1f' y='%.1f' font-size='10' text-anchor='middle'>epoch %.0f</text>\n",
                x0 + 38, py(hi) + 4, hi, x0 + 38, py(lo) + 4, lo, px(e_max), y0 + h - 12, e_max);
  svg << buf;
  const char* colors[2] = {"#1f77b4", "#d62728"};
  const std::vector<double>* series[2] = {&a, &b};
  const char* names[2] = {a_name, b_name};
  for (int s = 0; s < 2; ++s) {
    svg << "<polyline fill='none' stroke='" << colors[s] << "' stroke-width='2' points='";
    for (size_t i = 0; i < epochs.size(); ++i) {
      if (!std::isfinite((*series[s])[i])) continue;
      std::snprintf(buf, sizeof buf, "%.1f,%.1f ", px(epochs[i]), py((*series[s])[i]));
      svg << buf;
    }
    svg << "'/>\n";
    std::snprintf(buf, sizeof buf, "<text x='%.1f' y='%.1f' font-size='11' fill='%s'>%s</text>\n", x0 + 50 + 70 * s,
                  y0 + 30, colors[s], names[s]);
    svg << buf;
  }
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '\'') out += "&apos;";
    else out += c;
  }
  return out;
}

}  // namespace

void MetricsLog::write_svg(const std::string& path, const std::string& title) const {
  std::vector<double> epochs, tl, vl, tm, vm;
  for (const EpochRow& r : rows_) {
    epochs.push_back(static_cast<double>(r.epoch));
    tl.push_back(r.train_loss);
    vl.push_back(r.val_loss);
    tm.push_back(r.train_miou);
    vm.push_back(r.val_miou);
  }
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='820' height='330' font-family='sans-serif'>\n"
      << "<text x='410' y='16' font-size='14' text-anchor='middle'>" << xml_escape(title) << "</text>\n";
  panel(svg, 10, 25, 390, 295, "loss", epochs, tl, vl, "train", "val");
  panel(svg, 420, 25, 390, 295, "mean IoU", epochs, tm, vm, "train", "val");
  svg << "</svg>\n";
  write_file_atomically(path, svg.str());
}

}  // namespace crfseg::app
