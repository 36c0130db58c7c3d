// Training reports: the per-epoch metrics CSV and an SVG plot of its curves.
//
// metrics.csv has one row per epoch and a fixed header:
//   epoch,lr,seconds,train_loss,train_acc,train_miou,train_dice,val_loss,val_acc,val_miou,val_dice,
//   val_boundary_miou[,val_iou_<class>...]
// (val_boundary_miou: the validation mean IoU within 3 px of a change of
// the true label, see boundary_band_targets in metrics.h). It is rewritten
// whole (atomically) after every epoch from the rows kept in memory, so a
// killed run never leaves a half-written line, and a resumed run reloads it
// and continues. A file written before val_boundary_miou existed still
// loads (that column NaN) and is rewritten in the new form.
// curves.svg draws loss (left panel) and mean IoU (right panel) for train
// and validation against the epoch; it is plain SVG 1.1 with no scripts.
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace crfseg::app {

struct EpochRow {
  int64_t epoch = 0;
  double lr = 0, seconds = 0;
  double train_loss = 0, train_acc = 0, train_miou = 0, train_dice = 0;
  double val_loss = 0, val_acc = 0, val_miou = 0, val_dice = 0;
  double val_boundary_miou = NAN;
  std::vector<double> val_iou;  // per class
};

class MetricsLog {
 public:
  MetricsLog(std::string csv_path, std::vector<std::string> class_names);
  // Reads an existing CSV (for --resume), keeping the rows with epoch <=
  // last_epoch. A missing file gives an empty log; a malformed one throws IOError.
  void load(int64_t last_epoch);
  void append(const EpochRow& row);  // then rewrites the CSV atomically
  const std::vector<EpochRow>& rows() const { return rows_; }
  // Writes the SVG plot of the rows so far (atomically).
  void write_svg(const std::string& path, const std::string& title) const;

 private:
  std::string header(bool with_boundary = true) const;
  std::string csv_path_;
  std::vector<std::string> class_names_;
  std::vector<EpochRow> rows_;
};

// Writes `text` to `path` through a temporary file and a rename, so readers
// never see a partial file. Throws IOError naming the path.
void write_file_atomically(const std::string& path, const std::string& text);

// Creates `dir` and its parents (nothing when it exists); throws IOError
// "<op>: cannot create the output folder DIR: <reason>" otherwise.
void create_output_dir(const std::string& dir, const char* op);

}  // namespace crfseg::app
