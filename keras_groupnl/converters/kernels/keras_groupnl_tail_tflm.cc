// keras-groupnl: the fused GroupNL tail as a TensorFlow Lite Micro custom op.
//
// Register it with
//   resolver.AddCustom("KERAS_GROUPNL_TAIL", Register_KERAS_GROUPNL_TAIL());
// (the generated <model>_ops.h does). Inputs: int8 seed maps, int8 tables,
// int32 channel plan, int32 header; output: int8 (see keras_groupnl_tail.h).
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/micro/micro_context.h"

extern "C" {
#include "keras_groupnl_tail.h"
}

namespace {

struct OpData {
  int scratch;  // one pixel's seed maps: int16 differences, then bytes
  int seeds;
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  return context->AllocatePersistentBuffer(context, sizeof(OpData));
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE_EQ(context, tflite::NumInputs(node), 4);
  TF_LITE_ENSURE_EQ(context, tflite::NumOutputs(node), 1);
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  TfLiteTensor* x = micro->AllocateTempInputTensor(node, 0);
  TfLiteTensor* tables = micro->AllocateTempInputTensor(node, 1);
  TfLiteTensor* plan = micro->AllocateTempInputTensor(node, 2);
  TfLiteTensor* header = micro->AllocateTempInputTensor(node, 3);
  TfLiteTensor* out = micro->AllocateTempOutputTensor(node, 0);
  TF_LITE_ENSURE(context, x != nullptr && tables != nullptr &&
                              plan != nullptr && header != nullptr &&
                              out != nullptr);
  TF_LITE_ENSURE_TYPES_EQ(context, x->type, kTfLiteInt8);
  TF_LITE_ENSURE_TYPES_EQ(context, out->type, kTfLiteInt8);
  TF_LITE_ENSURE_TYPES_EQ(context, plan->type, kTfLiteInt32);
  const int dims = x->dims->size;
  const int32_t* head = tflite::GetTensorData<int32_t>(header);
  TF_LITE_ENSURE_EQ(context, header->dims->data[0], 6);
  const int in_channels = x->dims->data[dims - 1];
  TF_LITE_ENSURE(context, head[4] >= 1 && head[5] >= 1);
  TF_LITE_ENSURE_EQ(context, in_channels % (head[4] * head[5]), 0);
  const int seeds = in_channels / head[4];
  TF_LITE_ENSURE_EQ(context, plan->dims->size, 2);
  TF_LITE_ENSURE_EQ(context, plan->dims->data[0], KERAS_GROUPNL_PLAN_ROWS);
  TF_LITE_ENSURE_EQ(context, out->dims->data[dims - 1], plan->dims->data[1]);
  const int32_t num_tables = tables->dims->size ? tables->dims->data[0] : 0;
  TF_LITE_ENSURE_EQ(
      context,
      keras_groupnl_tail_check_plan(
          tflite::GetTensorData<int32_t>(plan), plan->dims->data[1], seeds,
          num_tables, head[3]),
      0);
  auto* data = static_cast<OpData*>(node->user_data);
  data->seeds = seeds;
  TfLiteStatus status = context->RequestScratchBufferInArena(
      context, 3 * seeds, &data->scratch);
  micro->DeallocateTempTfLiteTensor(x);
  micro->DeallocateTempTfLiteTensor(tables);
  micro->DeallocateTempTfLiteTensor(plan);
  micro->DeallocateTempTfLiteTensor(header);
  micro->DeallocateTempTfLiteTensor(out);
  return status;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteEvalTensor* x = tflite::micro::GetEvalInput(context, node, 0);
  const TfLiteEvalTensor* tables =
      tflite::micro::GetEvalInput(context, node, 1);
  const TfLiteEvalTensor* plan = tflite::micro::GetEvalInput(context, node, 2);
  const TfLiteEvalTensor* header =
      tflite::micro::GetEvalInput(context, node, 3);
  TfLiteEvalTensor* out = tflite::micro::GetEvalOutput(context, node, 0);
  const int dims = x->dims->size;
  const int32_t in_channels = x->dims->data[dims - 1];
  int32_t pixels = 1;
  for (int i = 0; i < dims - 1; ++i) pixels *= x->dims->data[i];
  auto* data = static_cast<OpData*>(node->user_data);
  // Scratch buffers are aligned: the int16 part first, then the bytes.
  auto* diff =
      static_cast<int16_t*>(context->GetScratchBuffer(context, data->scratch));
  auto* index = reinterpret_cast<uint8_t*>(diff + data->seeds);
  const int status = keras_groupnl_tail_s8(
      tflite::micro::GetTensorData<int8_t>(x), pixels, in_channels,
      tflite::micro::GetTensorData<int8_t>(tables),
      tflite::micro::GetTensorData<int32_t>(plan), plan->dims->data[1],
      tflite::micro::GetTensorData<int32_t>(header), diff, index,
      tflite::micro::GetTensorData<int8_t>(out));
  return status == 0 ? kTfLiteOk : kTfLiteError;
}

}  // namespace

TFLMRegistration* Register_KERAS_GROUPNL_TAIL() {
  static TFLMRegistration registration =
      tflite::micro::RegisterOp(Init, Prepare, Eval);
  return &registration;
}
